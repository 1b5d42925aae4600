// The admin tab's adapter releases: each name's versions and aliases, the canary's evidence against stable
// (answers, error rate, sentiment, win rate on shadowed pairs) and one-click promote / roll back. Uses the
// API any client has: GET /v1/adapters, GET /v1/adapters/{name}/evaluation, POST .../promote, .../rollback.

const percent = (x) => (x === null || x === undefined ? "–" : `${(100 * x).toFixed(1)}%`);

// "v1 stable · v2 canary · v3": every version, with the aliases that point at it.
export function versionsText(adapter) {
  const aliases = {};
  for (const [alias, version] of Object.entries(adapter.aliases || {})) (aliases[version] ??= []).push(alias);
  return (adapter.versions || [{ version: adapter.version }])
    .map((v) => [`v${v.version}`, ...(aliases[v.version] || []).sort()].join(" "))
    .join(" · ");
}

// One line on the canary against stable, from GET /v1/adapters/{name}/evaluation; "" without a canary.
export function canaryText(adapter, evaluation) {
  const canary = adapter.aliases?.canary, stable = adapter.aliases?.stable;
  if (canary === undefined || canary === stable) return "";
  const version = evaluation?.versions?.find((v) => v.version === canary);
  if (!version?.samples) return `v${canary}: no answers yet`;
  const parts = [`v${canary}: ${version.samples} answers`];
  if (version.shadow_samples) parts.push(`${version.shadow_samples} shadowed`);
  if (version.error_rate) parts.push(`errors ${percent(version.error_rate.mean)}`);
  const sentiment = version.metrics?.sentiment;
  if (sentiment) parts.push(`sentiment ${sentiment.mean.toFixed(2)}`);
  const wins = evaluation.compare?.canary_vs_stable?.win_rate;
  if (wins) parts.push(`win rate ${percent(wins.rate)} (${wins.wins}–${wins.losses}, ${wins.ties} ties)`);
  return parts.join(", ");
}

// Fills the table's body: a row per adapter name. ``reload`` runs after a move.
export async function renderReleases(table, adapters, { api, guarded, reload }) {
  const evaluations = await Promise.all(adapters.map((a) => (a.aliases?.canary !== undefined
    ? api("GET", `v1/adapters/${a.name}/evaluation`).catch(() => null) : null)));
  table.tBodies[0].replaceChildren(...adapters.map((a, i) => {
    const row = document.createElement("tr");
    for (const value of [a.name, a.base_model, a.kind, versionsText(a), canaryText(a, evaluations[i])]) {
      row.insertCell().textContent = value;
    }
    const actions = row.insertCell();
    const button = (text, label, path, enabled) => {
      const b = document.createElement("button");
      Object.assign(b, { type: "button", textContent: text, disabled: !enabled });
      b.setAttribute("aria-label", `${label} ${a.name}`);
      b.onclick = async () => { await guarded(api("POST", path, { reason: "from the studio" })); reload(); };
      actions.append(b);
    };
    const canary = a.aliases?.canary;
    button("Promote canary", "promote canary of", `v1/adapters/${a.name}/promote`,
      canary !== undefined && canary !== a.aliases?.stable);
    button("Roll back", "roll back stable of", `v1/adapters/${a.name}/rollback`, (a.versions || []).length > 1);
    return row;
  }));
}
