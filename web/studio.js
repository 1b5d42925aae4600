// copyserve studio: one page over the service's own HTTP API (/v1/copy streamed as SSE,
// /v1/copy/revise, /v1/models, /v1/routes, /v1/adapters). No build step.
import { marked } from "./vendor/marked.esm.js";
import DOMPurify from "./vendor/purify.es.js";
import { initBatches } from "./batches.js";
import { renderReleases } from "./releases.js";

const $ = (id) => document.getElementById(id);
const store = {
  get: (key, fallback) => JSON.parse(localStorage.getItem(`copyserve.${key}`) ?? "null") ?? fallback,
  set: (key, value) => localStorage.setItem(`copyserve.${key}`, JSON.stringify(value)),
};
const HISTORY_MAX = 50;
let routes = [];
let keywords = [];
let running = null;   // {controller, started, firstTokenMs}
let current = null;   // the generation on screen: {request, response, session_id, cache}

// --- API ------------------------------------------------------------------------------------

function headers() {
  const key = $("api-key").value.trim();
  return { "Content-Type": "application/json", ...(key ? { Authorization: `Bearer ${key}` } : {}) };
}

class ApiError extends Error {
  constructor(status, body, retryAfter) {
    super(body?.error?.message || `HTTP ${status}`);
    this.status = status;
    this.type = body?.error?.type;
    this.retryAfter = retryAfter;
  }
}

// What a person should read for an API error: the service's own message says what to fix;
// the prefix says what kind of problem it is.
export function explain(err) {
  if (err.name === "AbortError") return "Stopped.";
  if (!(err instanceof ApiError)) return `Cannot reach the service (${err.message}). Is copyserve running?`;
  const message = err.message.replace(/\s*\(request id: [^)]*\)$/, "");
  switch (err.status) {
    case 400: case 422: return `The request needs fixing: ${message}`;
    case 401: return `Your API key was not accepted: ${message}. Paste a key in the API key box.`;
    case 403: return `Not allowed with this key: ${message}`;
    case 404: return `Not found: ${message}`;
    case 409: return `Not possible right now: ${message}`;
    case 413: return `Too much text: ${message}`;
    case 429: return `Rate limited: ${message}. Try again in ${err.retryAfter || "a few"} seconds.`;
    case 503: return `The service is busy or restarting: ${message}. Try again shortly.`;
    default: return `The service failed (${err.status}): ${message}`;
  }
}

async function api(method, path, body) {
  const response = await fetch(path, { method, headers: headers(), body: body && JSON.stringify(body) });
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data, response.headers.get("Retry-After"));
  return data;
}

// POST with `stream: true`; calls onEvent per SSE event. Returns the response headers.
async function streamEvents(path, body, signal, onEvent) {
  const response = await fetch(path, { method: "POST", headers: headers(), body: JSON.stringify(body), signal });
  if (!response.ok) {
    const data = await response.json().catch(() => null);
    throw new ApiError(response.status, data, response.headers.get("Retry-After"));
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const chunk = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = chunk.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
      if (data && data !== "[DONE]") onEvent(JSON.parse(data));
    }
  }
  return response.headers;
}

// --- messages, tabs, theme --------------------------------------------------------------------

function showMessage(text) {
  $("message").textContent = text;
  $("message").hidden = !text;
}

const TABS = ["write", "history", "batches", "admin"];

function selectTab(name) {
  for (const tab of TABS) {
    $(`tab-${tab}`).setAttribute("aria-selected", String(tab === name));
    $(`panel-${tab}`).hidden = tab !== name;
  }
  if (name === "history") renderHistory();
  if (name === "admin") loadAdmin();
  if (name === "batches") batches.load();
}

function toggleTheme() {
  const next = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
  document.documentElement.dataset.theme = next;
  localStorage.setItem("copyserve.theme", next);
}

// --- the form ---------------------------------------------------------------------------------

function renderChips() {
  const box = $("chips");
  box.querySelectorAll(".chip").forEach((c) => c.remove());
  for (const [i, word] of keywords.entries()) {
    const chip = document.createElement("span");
    chip.className = "chip";
    chip.textContent = word;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "×";
    remove.setAttribute("aria-label", `remove keyword ${word}`);
    remove.onclick = () => { keywords.splice(i, 1); renderChips(); };
    chip.append(remove);
    box.insertBefore(chip, $("keyword-input"));
  }
}

function addKeyword(text) {
  for (const word of text.split(/[,，、]/).map((w) => w.trim()).filter(Boolean)) {
    if (!keywords.includes(word) && keywords.length < 20) keywords.push(word);
  }
  renderChips();
}

function label(route) {
  const { en, zh } = route.labels || {};
  return [en || route.industry, zh].filter(Boolean).join(" · ");
}

function renderTemplates() {
  const route = routes.find((r) => r.industry === $("industry").value);
  const list = $("template-list");
  list.replaceChildren();
  for (const example of route?.examples || []) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = `${example.product} — ${(example.keywords || []).join(", ")}`;
    button.onclick = () => fillForm({ industry: route.industry, ...example });
    item.append(button);
    list.append(item);
  }
}

function fillForm(request) {
  if (request.industry) $("industry").value = request.industry;
  $("product").value = request.product || "";
  keywords = [...(request.keywords || [])];
  renderChips();
  $("tone").value = request.tone || "";
  $("length").value = request.length || "medium";
  $("language").value = request.language || "";
  $("channel").value = request.channel || "";
  if (request.temperature !== undefined) $("temperature").value = request.temperature;
  $("temperature-value").textContent = $("temperature").value;
  renderTemplates();
}

// --- channels: each platform's unit, counted as deployments/text/channels.py counts it ------------------

const WIDE = /[\u1100-\u115F\u2E80-\u303E\u3041-\u33FF\u3400-\u4DBF\u4E00-\u9FFF\uA000-\uA4CF\uAC00-\uD7A3\uF900-\uFAFF\uFE30-\uFE4F\uFF00-\uFF60\uFFE0-\uFFE6\u{1F300}-\u{1F64F}\u{20000}-\u{3FFFD}]/u;
const X_LIGHT = [[0, 4351], [8192, 8205], [8208, 8223], [8242, 8247]];
const GSM = new Set("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà");
const GSM_EXT = new Set("^{}\\[~]|€\f");
let channels = [];

export function measure(text, unit) {
  const chars = [...text];
  if (unit === "width") return chars.reduce((n, c) => n + (WIDE.test(c) ? 2 : 1), 0);
  if (unit === "gbk_bytes") return chars.reduce((n, c) => n + (c.codePointAt(0) < 128 ? 1 : 2), 0);
  if (unit === "x_weighted") {
    return chars.reduce((n, c) => n + (X_LIGHT.some(([lo, hi]) => c.codePointAt(0) >= lo && c.codePointAt(0) <= hi) ? 1 : 2), 0);
  }
  if (unit === "sms_segments") {
    if (chars.every((c) => GSM.has(c) || GSM_EXT.has(c))) {
      const septets = chars.length + chars.filter((c) => GSM_EXT.has(c)).length;
      return septets <= 160 ? 1 : Math.ceil(septets / 153);
    }
    return chars.length <= 70 ? 1 : Math.ceil(chars.length / 67);
  }
  return chars.length;
}

async function loadChannels() {
  try {
    channels = (await api("GET", "v1/channels")).data;
    $("channel").replaceChildren(new Option("free text 自由文案", ""),
      ...channels.map((c) => new Option(`${c.label.en} ${c.label.zh || ""}`.trim(), c.id)));
  } catch (err) {
    showMessage(explain(err));
  }
}

// How each channel looks where it runs: a card built from the fields (text only, never HTML), above the slots.
function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

const list = (v) => (v === undefined || v === null ? [] : Array.isArray(v) ? v : [v]).filter(Boolean);

const CARDS = {
  "google-rsa": (f) => [el("div", "card-meta", "Sponsored · www.example.com"),
    el("div", "card-link", list(f.headlines).join(" | ")), el("div", "", list(f.descriptions).join(" "))],
  "meta-ad": (f) => [el("div", "", f.primary_text || ""), el("div", "card-image", "image"),
    el("div", "card-title", f.headline || ""), el("div", "card-meta", f.description || "")],
  "amazon-product": (f) => {
    const bullets = el("ul");
    bullets.append(...list(f.bullets).map((b) => el("li", "", b)));
    return [el("div", "card-link", f.title || ""), bullets];
  },
  "taobao-title": (f) => [el("div", "card-image", "商品图"), el("div", "card-title", f.title || ""),
    el("div", "card-price", "¥ --")],
  "xiaohongshu-note": (f) => [el("div", "card-image", "封面"), el("div", "card-title", f.title || ""),
    el("div", "card-body", f.body || ""), el("div", "card-link", list(f.hashtags).map((t) => `#${t}`).join(" "))],
  "weibo-post": (f) => [el("div", "card-meta", "@brand"), el("div", "card-body", f.text || "")],
  "x-post": (f) => [el("div", "card-meta", "@brand"), el("div", "card-body", f.text || "")],
  "sms": (f) => [el("div", "card-bubble", f.text || "")],
  "email": (f) => [el("div", "card-title", f.subject || ""), el("div", "card-meta", f.preheader || "")],
};

function placementCard(channel, fields) {
  const build = CARDS[channel.id];
  if (!build) return [];
  const card = el("div", "card");
  card.dataset.card = channel.id;
  card.append(...build(fields || {}));
  return [card];
}

function hidePlacement() {
  $("placement").hidden = true;
  $("placement").replaceChildren();
}

// A preview of the placement: each field in its slot, with its count against the platform's limit. Mid-stream
// (a `fields` event) it shows the fields as far as written; a field not begun yet is missing.
function showPlacement(response) {
  const channel = channels.find((c) => c.id === response.channel);
  $("placement").hidden = !channel;
  if (!channel) return $("placement").replaceChildren();
  $("placement").dataset.channel = channel.id;
  const rows = channel.fields.flatMap((f) => {
    const written = response.fields?.[f.name];
    const values = written === undefined || written === null ? [] : Array.isArray(written) ? written : [written];
    return values.map((value, i) => {
      const row = document.createElement("div");
      row.className = "slot";
      const name = document.createElement("span");
      name.className = "slot-name";
      name.textContent = values.length > 1 ? `${f.name} ${i + 1}` : f.name;
      const text = document.createElement("span");
      text.className = "slot-text";
      text.textContent = value;
      // An SMS counts characters against one segment's room (160 GSM-7, else 70); other units count themselves.
      const gsm = [...value].every((c) => GSM.has(c) || GSM_EXT.has(c));
      const [used, limit, unit] = f.unit === "sms_segments"
        ? [[...value].length, gsm ? 160 : 70, `characters (${gsm ? "GSM-7" : "UCS-2"}, one segment)`]
        : [measure(value, f.unit), f.limit, f.unit];
      const count = document.createElement("span");
      count.className = "counter";
      count.dataset.state = used > limit ? "over" : used === limit ? "full" : "ok";  // red at the limit
      count.textContent = `${used} / ${limit} ${unit}`;
      row.append(name, text, count);
      return row;
    });
  });
  const title = document.createElement("p");
  title.className = "muted";
  title.textContent = `${channel.label.en} · ${channel.label.zh || ""}`;
  $("placement").replaceChildren(title, ...placementCard(channel, response.fields), ...rows);
}

function formRequest() {
  if ($("keyword-input").value.trim()) { addKeyword($("keyword-input").value); $("keyword-input").value = ""; }
  const request = { industry: $("industry").value, product: $("product").value.trim(), keywords: [...keywords],
                    length: $("length").value, temperature: Number($("temperature").value) };
  if ($("tone").value.trim()) request.tone = $("tone").value.trim();
  if ($("language").value) request.language = $("language").value;
  if ($("channel").value) request.channel = $("channel").value;
  return request;
}

async function loadRoutes() {
  try {
    const models = await api("GET", "v1/models");
    routes = models.data.filter((m) => m.copyserve?.kind === "route").map((m) => m.copyserve);
    $("industry").replaceChildren(...routes.map((r) => new Option(label(r), r.industry)));
    batches.setIndustries(routes.map((r) => new Option(label(r), r.industry)));
    renderTemplates();
    showMessage("");
  } catch (err) {
    showMessage(explain(err));
  }
}

// --- generating -------------------------------------------------------------------------------

function setState(state, text) {
  $("state").dataset.state = state;
  $("state").textContent = text;
  $("copy-text").dataset.state = state;
  $("generate").disabled = state === "streaming";
  $("stop").disabled = state !== "streaming";
}

function renderMarkdown(text) {
  $("copy-text").innerHTML = DOMPurify.sanitize(marked.parse(text));
}

async function run(path, body, request) {
  showMessage("");
  running = { controller: new AbortController(), started: performance.now(), firstTokenMs: null };
  $("result").hidden = true;
  hidePlacement();
  $("ttft").textContent = "";
  renderMarkdown("");
  setState("streaming", "Writing…");
  let text = "";
  let final = null;
  try {
    const responseHeaders = await streamEvents(path, { ...body, stream: true }, running.controller.signal, (event) => {
      if (event.type === "delta") {
        if (running.firstTokenMs === null) {
          running.firstTokenMs = performance.now() - running.started;
          $("ttft").textContent = `first token in ${Math.round(running.firstTokenMs)} ms`;
          $("ttft").dataset.ms = String(Math.round(running.firstTokenMs));
        }
        text += event.text;
        renderMarkdown(text);
      } else if (event.type === "fields") {
        if (event.index === 0 && body.channel) showPlacement({ channel: body.channel, fields: event.fields });
      } else if (event.type === "retry") {
        text = "";
        hidePlacement();
        setState("streaming", event.reason === "a field was empty"
          ? "A field came back empty; writing again…"
          : `Below the quality bar (sentiment ${event.sentiment_score}); writing again…`);
      } else if (event.type === "final") {
        final = event;
      } else if (event.type === "error") {
        throw new ApiError(event.error?.code || 503, event);
      }
    });
    if (!final) throw new ApiError(503, { error: { message: "the stream ended without an answer" } });
    current = { request, response: final, session_id: body.session_id, cache: responseHeaders.get("X-Cache") || "miss",
                firstTokenMs: running.firstTokenMs, at: Date.now() };
    showResult(current);
    saveHistory(current);
    setState("done", "Done");
  } catch (err) {
    const stopped = err.name === "AbortError";
    setState(stopped ? "stopped" : "error", stopped ? "Stopped" : "Failed");
    if (!stopped) showMessage(explain(err));
  } finally {
    running = null;
    $("generate").disabled = false;
    $("stop").disabled = true;
  }
}

function generate() {
  const request = formRequest();
  if (!request.product) { showMessage("The request needs fixing: write the product to describe."); $("product").focus(); return; }
  return run("v1/copy", { ...request, session_id: crypto.randomUUID() }, request);
}

function revise(instruction) {
  if (!current?.session_id) return;
  const request = { ...current.request, revision: instruction };
  return run("v1/copy/revise", { session_id: current.session_id, instruction,
                                 temperature: current.request.temperature ?? 0.7 }, request);
}

// --- the result -------------------------------------------------------------------------------

// Word-level diff (LCS) of the raw model text against the polished copy.
export function diffWords(before, after) {
  const a = before.split(/(\s+)/), b = after.split(/(\s+)/);
  const n = a.length, m = b.length;
  const lcs = Array.from({ length: n + 1 }, () => new Uint16Array(m + 1));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--)
    lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
  const parts = [];
  let i = 0, j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) { parts.push(["same", a[i]]); i++; j++; }
    else if (j < m && (i === n || lcs[i][j + 1] >= lcs[i + 1][j])) { parts.push(["ins", b[j]]); j++; }
    else { parts.push(["del", a[i]]); i++; }
  }
  return parts;
}

function showResult({ response, cache, firstTokenMs }) {
  renderMarkdown(response.text);
  showPlacement(response);
  $("result").hidden = false;
  const s = response.sentiment;
  $("sentiment").className = `badge ${s?.label || ""}`;
  $("sentiment").textContent = s ? `sentiment: ${s.label} ${s.score.toFixed(2)}` : "sentiment: off";
  $("served").textContent = [response.model, response.adapter, response.variant && `variant ${response.variant}`]
    .filter(Boolean).join(" · ");
  $("cache").textContent = `cache ${cache}`;
  $("attempts").textContent = `${response.attempts} attempt${response.attempts === 1 ? "" : "s"}`;
  const t = response.timings;
  $("timings").textContent = [firstTokenMs != null && `first token ${Math.round(firstTokenMs)} ms (page)`,
    `total ${Math.round(t.total_ms)} ms`, `${t.tokens_per_s} tok/s`,
    t.postprocess_ms != null && `post-processing ${t.postprocess_ms} ms`,
    t.polish_ms != null && `polish ${t.polish_ms} ms`, t.sentiment_ms != null && `sentiment ${t.sentiment_ms} ms`]
    .filter(Boolean).join(" · ");
  const edits = response.polish?.edits || [];
  $("edit-count").textContent = `(${edits.length})`;
  $("diff").replaceChildren(...diffWords(response.raw_text || "", response.text).map(([kind, word]) => {
    const node = document.createElement(kind === "same" ? "span" : kind);
    node.textContent = word;
    return node;
  }));
  $("edit-list").replaceChildren(...edits.map((e) => {
    const item = document.createElement("li");
    item.textContent = `${e.rule}: “${e.before}” → “${e.after}”${e.why ? ` (${e.why})` : ""}`;
    return item;
  }));
}

// --- history ----------------------------------------------------------------------------------

function saveHistory(entry) {
  const history = store.get("history", []);
  history.unshift(entry);
  store.set("history", history.slice(0, HISTORY_MAX));
}

function renderHistory() {
  const history = store.get("history", []);
  const list = $("history-list");
  list.replaceChildren();
  if (!history.length) list.append(Object.assign(document.createElement("li"), { textContent: "Nothing yet." }));
  for (const entry of history) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    const what = entry.request.revision ? `revised: ${entry.request.revision}` : entry.request.industry;
    button.textContent = `${new Date(entry.at).toLocaleString()} · ${entry.request.product} (${what}) — ` +
      `${entry.response.text.slice(0, 80)}…`;
    button.onclick = () => {
      current = entry;
      fillForm(entry.request);
      selectTab("write");
      showResult(entry);
      setState("done", "From history");
    };
    item.append(button);
    list.append(item);
  }
}

// --- admin ------------------------------------------------------------------------------------

async function loadAdmin() {
  showMessage("");
  try {
    const [routeTable, adapters, keys] = await Promise.all(
      [api("GET", "v1/routes"), api("GET", "v1/adapters"), api("GET", "v1/keys")]);
    const body = $("routes").tBodies[0];
    body.replaceChildren();
    for (const route of routeTable.data) {
      const variant = route.variants[0];
      const row = body.insertRow();
      row.insertCell().textContent = label(route);
      row.insertCell().textContent = route.variants.map((v) => v.model).join(", ");
      const select = document.createElement("select");
      select.setAttribute("aria-label", `adapter for ${route.industry}`);
      select.append(new Option("(base model)", ""));
      for (const a of adapters.data.filter((a) => a.base_model === variant.model)) {
        select.append(new Option(`${a.name} v${a.version}`, a.name));
      }
      select.value = route.variants.length === 1 ? (variant.adapter || "") : "";
      select.onchange = () => setRouteAdapter(route.industry, variant.model, select.value);
      row.insertCell().append(select);
      row.insertCell().textContent = route.source + (route.variants.length > 1 ? ` (A/B: ${route.variants.length})` : "")
        + (route.shadow ? `, shadow ${route.shadow.adapter} ${Math.round(100 * route.shadow.share)}%` : "");
      const reset = document.createElement("button");
      reset.type = "button";
      reset.textContent = "Reset";
      reset.disabled = route.source !== "live";
      reset.onclick = async () => { await guarded(api("DELETE", `v1/routes/${route.industry}`)); loadAdmin(); };
      row.insertCell().append(reset);
    }
    await renderReleases($("adapters"), adapters.data, { api, guarded, reload: loadAdmin });
    $("keys").tBodies[0].replaceChildren(...keys.data.map((k) => {
      const row = document.createElement("tr");
      for (const value of [k.id, k.role, k.name, k.revoked ? "revoked" : "active"]) row.insertCell().textContent = value;
      return row;
    }));
  } catch (err) {
    showMessage(explain(err));
  }
}

async function guarded(promise) {
  try { return await promise; } catch (err) { showMessage(explain(err)); return null; }
}

async function setRouteAdapter(industry, model, adapter) {
  const done = await guarded(api("PUT", `v1/routes/${industry}`, { model, adapter: adapter || null }));
  if (done) showMessage("");
  loadAdmin();
}

// --- wiring -----------------------------------------------------------------------------------

function wire() {
  for (const tab of TABS) $(`tab-${tab}`).onclick = () => selectTab(tab);
  $("theme").onclick = toggleTheme;
  // The key lives for this tab only (sessionStorage): an admin key must not stay on the machine.
  localStorage.removeItem("copyserve.apiKey");  // where earlier versions kept it
  $("api-key").value = sessionStorage.getItem("copyserve.apiKey") ?? "";
  $("api-key").onchange = () => {
    sessionStorage.setItem("copyserve.apiKey", $("api-key").value.trim());
    loadRoutes();
    loadChannels();
  };
  $("industry").onchange = renderTemplates;
  $("temperature").oninput = () => { $("temperature-value").textContent = $("temperature").value; };
  $("keyword-input").onkeydown = (e) => {
    if ((e.key === "Enter" || e.key === ",") && e.target.value.trim()) {
      e.preventDefault();
      addKeyword(e.target.value);
      e.target.value = "";
    } else if (e.key === "Backspace" && !e.target.value && keywords.length) {
      keywords.pop();
      renderChips();
    }
  };
  $("copy-form").onsubmit = (e) => { e.preventDefault(); generate(); };
  $("stop").onclick = () => running?.controller.abort();
  $("regenerate").onclick = () => { if (current) { fillForm(current.request); generate(); } };
  $("copy-button").onclick = async () => {
    await navigator.clipboard.writeText(current?.response.text || "");
    $("copy-button").textContent = "Copied";
    setTimeout(() => { $("copy-button").textContent = "Copy"; }, 1500);
  };
  $("revise-form").onsubmit = (e) => {
    e.preventDefault();
    if ($("instruction").value.trim()) revise($("instruction").value.trim());
  };
  for (const button of document.querySelectorAll("[data-instruction]")) {
    button.onclick = () => revise(button.dataset.instruction);
  }
  $("clear-history").onclick = () => { store.set("history", []); renderHistory(); };
  $("refresh-admin").onclick = loadAdmin;
  document.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && !running) { e.preventDefault(); generate(); }
    if (e.key === "Escape" && running) running.controller.abort();
  });
}

// Multipart uploads set their own Content-Type: only the key goes along.
const authHeader = () => { const { Authorization } = headers(); return Authorization ? { Authorization } : {}; };
const batches = initBatches({ api, authHeader, explain, showMessage });
wire();
loadRoutes();
loadChannels();
