// The Batches tab: a catalogue (CSV or JSONL) becomes an OpenAI batch of /v1/copy lines; the table
// shows each batch's progress and downloads its results. Uses the same API as any client:
// POST /v1/files, POST /v1/batches, GET /v1/batches, GET /v1/files/{id}/content.

const $ = (id) => document.getElementById(id);
const POLL_MS = 2000;
const ACTIVE = new Set(["validating", "in_progress", "finalizing", "cancelling"]);
let polling = null;

// RFC 4180 CSV: quoted fields may hold commas, quotes ("") and newlines. The first row names the columns.
export function parseCsv(text) {
  const rows = [];
  let row = [], field = "", quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { field += '"'; i++; }
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") { row.push(field); field = ""; }
    else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      row.push(field); field = "";
      if (row.some((v) => v !== "")) rows.push(row);
      row = [];
    } else field += c;
  }
  row.push(field);
  if (row.some((v) => v !== "")) rows.push(row);
  const [names = [], ...data] = rows;
  return data.map((values) => Object.fromEntries(names.map((name, i) => [name.trim(), values[i] ?? ""])));
}

// One /v1/copy batch line per catalogue row (the `finetune` columns; a row's own industry wins).
export function batchLines(rows, industry) {
  return rows.map((row, i) => ({
    custom_id: String(row.sku || row.id || `row-${i + 1}`),
    method: "POST",
    url: "/v1/copy",
    body: {
      industry: row.industry || industry,
      product: row.product_name || row.product || "",
      ...(row.keywords ? { keywords: String(row.keywords).split("|").map((k) => k.trim()).filter(Boolean) } : {}),
      ...(row.tone ? { tone: row.tone } : {}),
    },
  }));
}

function rowsOf(name, text) {
  if (name.toLowerCase().endsWith(".csv")) return parseCsv(text);
  return text.split("\n").filter((line) => line.trim()).map((line) => JSON.parse(line));
}

export function initBatches({ api, authHeader, explain, showMessage }) {
  async function start(event) {
    event.preventDefault();
    const file = $("batch-file").files[0];
    if (!file) { showMessage("Choose a CSV or JSONL catalogue first."); return; }
    try {
      const lines = batchLines(rowsOf(file.name, await file.text()), $("batch-industry").value);
      if (!lines.length) { showMessage(`${file.name} has no rows.`); return; }
      const form = new FormData();
      form.append("purpose", "batch");
      form.append("file", new Blob([lines.map((l) => JSON.stringify(l)).join("\n") + "\n"]), `${file.name}.jsonl`);
      const response = await fetch("v1/files", { method: "POST", headers: authHeader(), body: form });
      const uploaded = await response.json().catch(() => null);
      if (!response.ok) throw Object.assign(new Error(uploaded?.error?.message || `HTTP ${response.status}`),
        { status: response.status, apiBody: uploaded });
      await api("POST", "v1/batches", { input_file_id: uploaded.id, endpoint: "/v1/copy", completion_window: "24h",
        metadata: { source: file.name } });
      showMessage("");
      await load();
    } catch (err) {
      showMessage(err.apiBody ? `The upload was refused: ${err.message}` : explain(err));
    }
  }

  async function download(fileId, name) {
    const response = await fetch(`v1/files/${fileId}/content`, { headers: authHeader() });
    if (!response.ok) { showMessage(`Download failed (HTTP ${response.status}).`); return; }
    const link = document.createElement("a");
    link.href = URL.createObjectURL(await response.blob());
    link.download = name;
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
  }

  function fileButton(text, fileId, name) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = text;
    button.onclick = () => download(fileId, name);
    return button;
  }

  async function load() {
    clearTimeout(polling);
    let list;
    try { list = await api("GET", "v1/batches"); } catch (err) { showMessage(explain(err)); return; }
    $("batches").tBodies[0].replaceChildren(...list.data.map((b) => {
      const row = document.createElement("tr");
      row.dataset.batch = b.id;
      const counts = b.request_counts;
      const done = counts.completed + counts.failed;
      row.insertCell().textContent = b.metadata?.source || b.id;
      row.insertCell().textContent = b.status;
      const progress = document.createElement("progress");
      progress.max = counts.total || 1;
      progress.value = done;
      row.insertCell().append(progress, ` ${done}/${counts.total}${counts.failed ? ` (${counts.failed} failed)` : ""}`);
      const files = row.insertCell();
      if (b.output_file_id) files.append(fileButton("Results", b.output_file_id, `${b.id}-results.jsonl`));
      if (b.error_file_id) files.append(fileButton("Errors", b.error_file_id, `${b.id}-errors.jsonl`));
      return row;
    }));
    if (list.data.some((b) => ACTIVE.has(b.status)) && !$("panel-batches").hidden) polling = setTimeout(load, POLL_MS);
  }

  $("batch-form").onsubmit = start;
  $("refresh-batches").onclick = load;
  return { load, setIndustries(options) { $("batch-industry").replaceChildren(...options); } };
}
