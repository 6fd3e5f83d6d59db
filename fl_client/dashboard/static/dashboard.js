// The federation dashboard: draws the server's snapshot (GET /api/snapshot) and redraws it on
// every Server-Sent Event (/api/stream). Every figure comes from the chain; wei arrive as decimal
// strings and are shown exactly (BigInt), never through a float.
"use strict";

const state = { snapshot: null, receivedAt: 0, streamUp: false };
const charts = {};
window.flDashboard = { state, charts };

const WEI_PER_ETH = 10n ** 18n;

// ------------------------------------------------------------------ formatting

function $(id) { return document.getElementById(id); }

function setText(id, text) {
  const node = $(id);
  if (node && node.textContent !== text) node.textContent = text;
}

function group(digits) {
  return digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

// Exact ether amount of a wei string: "1500000000000000" -> "0.0015 ETH".
function eth(wei) {
  if (wei === null || wei === undefined) return "–";
  const value = BigInt(wei);
  const sign = value < 0n ? "-" : "";
  const abs = value < 0n ? -value : value;
  const whole = abs / WEI_PER_ETH;
  const fraction = (abs % WEI_PER_ETH).toString().padStart(18, "0").replace(/0+$/, "");
  return `${sign}${group(whole.toString())}${fraction ? "." + fraction : ""} ETH`;
}

function integer(value) {
  return value === null || value === undefined ? "–" : group(String(value));
}

function percent(accuracy) {
  return accuracy === null || accuracy === undefined ? "–" : (100 * accuracy).toFixed(2) + "%";
}

function short(address) {
  return address ? `${address.slice(0, 6)}…${address.slice(-4)}` : "–";
}

function clock(seconds) {
  return new Date(seconds * 1000).toLocaleTimeString([], { hour12: false });
}

function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${rest}` : `${m}:${rest}`;
}

function cell(row, text, className, title) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  if (title) td.title = title;
  row.appendChild(td);
  return td;
}

function header(table, columns) {
  const head = table.tHead;
  const wanted = columns.map((c) => c.label).join("|");
  if (head.dataset.columns === wanted) return;
  head.textContent = "";
  const row = head.insertRow();
  for (const column of columns) {
    const th = document.createElement("th");
    th.textContent = column.label;
    if (column.num) th.className = "num";
    row.appendChild(th);
  }
  head.dataset.columns = wanted;
}

function empty(table, columns, text) {
  const row = table.tBodies[0].insertRow();
  const td = cell(row, text, "empty");
  td.colSpan = columns;
}

// The chain's clock now: the server's clock plus how far the last block ran ahead of it.
function chainNow(snapshot) {
  const elapsed = Date.now() / 1000 - state.receivedAt;
  const ahead = Math.max(0, (snapshot.block_time || 0) - snapshot.server_time);
  return snapshot.server_time + elapsed + ahead;
}

// ------------------------------------------------------------------ the parts of the page

function drawHeader(s) {
  const d = s.deployment;
  setText("network", `on ${d.network} (chain ${d.chain_id})`);
  setText("address", d.address);
  $("address").title = "the FLCoordinator contract";
  const layers = d.hidden_layers.length ? `, hidden ${d.hidden_layers.join("x")}` : "";
  const p = s.parameters;
  setText("task", p ? ` · ${d.task}${layers}, ${integer(p.num_weights)} weights, ${p.mode} mode, ` +
    `${p.aggregation} aggregation, ${p.distance.toUpperCase()} distance` : ` · ${d.task}`);
}

function drawStatus(s) {
  const node = s.node;
  const live = $("live");
  const outage = $("outage");
  const notice = $("notice");
  if (!state.streamUp) {
    live.className = "pill pill-down";
    live.textContent = "dashboard server unreachable: reconnecting…";
  } else if (!node.reachable) {
    live.className = "pill pill-down";
    live.textContent = "node unreachable";
  } else if (node.message) {
    live.className = "pill pill-wait";
    live.textContent = "chain read failed";
  } else {
    live.className = "pill pill-live";
    live.textContent = `live · block ${integer(node.latest_block)}`;
  }
  if (!node.reachable && node.down_since) {
    const since = Date.now() / 1000 - node.down_since;
    outage.textContent = `Node unreachable since ${clock(node.down_since)} (for ${duration(since)}): ` +
      `${node.message || "no answer"}. The figures below are the last ones read from the chain ` +
      `(block ${integer(node.read_block)}); the dashboard keeps trying and catches up when the ` +
      "node is back.";
    outage.hidden = false;
  } else if (node.message) {
    outage.textContent = node.message;
    outage.hidden = false;
  } else {
    outage.hidden = true;
  }
  const recent = node.reachable && node.back_since && Date.now() / 1000 - node.back_since < 60;
  if (recent) {
    notice.textContent = `Node back since ${clock(node.back_since)}: caught up to block ` +
      `${integer(node.read_block)}.`;
  }
  notice.hidden = !recent;
  $("loading").hidden = s.ready || !node.reachable;
}

function drawRound(s) {
  const r = s.round;
  const p = s.parameters;
  if (!r || !p) return;
  setText("round-number", String(r.number));
  setText("round-phase", r.phase);
  setText("round-submissions", String(r.submissions));
  setText("round-target", String(p.target));
  setText("round-minimum", String(p.minimum));
  const fill = Math.min(100, (100 * r.submissions) / Math.max(1, p.target));
  $("round-meter").style.width = `${fill}%`;
  $("round-min-mark").style.left = `${Math.min(100, (100 * p.minimum) / Math.max(1, p.target))}%`;
  const extra = [];
  if (r.phase === "Closing") extra.push(`closing: ${r.closed_segments} of ${p.segments} segments written`);
  if (p.mode === "commit_reveal") extra.push(`${r.commits} commitments, ${r.completed} revealed`);
  else if (r.completed !== r.submissions) extra.push(`${r.completed} complete, ${r.submissions} counted`);
  setText("round-extra", extra.join(" · "));
  drawCountdown();
}

function drawCountdown() {
  const s = state.snapshot;
  if (!s || !s.round) return;
  const left = s.round.deadline - chainNow(s);
  setText("round-countdown", left >= 0 ? `${duration(left)} left` : `deadline passed ${duration(-left)} ago`);
  setText("round-deadline", `deadline ${new Date(s.round.deadline * 1000).toLocaleString()}`);
  drawStatus(s);
}

function drawModel(s) {
  const m = s.model;
  if (!m) return;
  setText("model-version", String(m.version));
  setText("model-accuracy", m.accuracy === null ? (m.note || "–") : percent(m.accuracy));
  setText("model-hash", m.hash);
  const d = s.deployment;
  setText("model-task", `on the ${d.task} test set (held out by the deployment's seed)`);
}

function drawPool(s) {
  const pool = s.pool;
  if (!pool) return;
  for (const key of ["funded", "credited", "withdrawn", "available"]) {
    setText(`pool-${key}`, eth(pool[key]));
    $(`pool-${key}`).title = `${pool[key]} wei`;
  }
  const funded = Number(BigInt(pool.funded)) || 1;
  const withdrawn = Number(BigInt(pool.withdrawn));
  const owed = Number(BigInt(pool.credited) - BigInt(pool.withdrawn));
  const available = Number(BigInt(pool.available));
  $("pool-bar-withdrawn").style.width = `${(100 * withdrawn) / funded}%`;
  $("pool-bar-owed").style.width = `${(100 * owed) / funded}%`;
  $("pool-bar-available").style.width = `${(100 * available) / funded}%`;
  const fundings = s.fundings || [];
  const total = fundings.reduce((sum, f) => sum + BigInt(f.amount), 0n);
  setText("pool-fundings", `${fundings.length} funding${fundings.length === 1 ? "" : "s"} ` +
    `(PoolFunded, ${eth(total.toString())}) · contract balance ${eth(pool.balance)}`);
}

// Reward columns for the most recent rounds that have settled submissions (the Submissions table
// below lists every round).
const CLIENT_ROUNDS = 4;

function drawClients(s) {
  const table = $("clients");
  const byKey = new Map();
  const settled = new Set();
  for (const sub of s.submissions || []) {
    byKey.set(`${sub.round}|${sub.client}`, sub);
    settled.add(sub.round);
  }
  const rounds = [...settled].sort((a, b) => b - a).slice(0, CLIENT_ROUNDS);
  const columns = [
    { label: "account" }, { label: "submissions", num: true },
    { label: "credit", num: true }, { label: "withdrawn", num: true },
    { label: "rewards", num: true }, { label: "fees", num: true },
    ...rounds.map((n) => ({ label: `round ${n}`, num: true })),
  ];
  header(table, columns);
  const body = table.tBodies[0];
  body.textContent = "";
  const accounts = s.accounts || [];
  if (!accounts.length) empty(table, columns.length, "no submissions yet");
  for (const account of accounts) {
    const row = body.insertRow();
    row.dataset.account = account.address;
    const who = cell(row, short(account.address), "mono account", account.address);
    if (s.parameters && account.address === s.parameters.owner) who.textContent += " (owner)";
    cell(row, account.left_out ? `${account.submissions} (${account.left_out} left out)` : String(account.submissions), "num submissions");
    cell(row, eth(account.credit), "num credit", `${account.credit} wei`);
    cell(row, eth(account.withdrawn), "num withdrawn", `${account.withdrawn} wei`);
    cell(row, eth(account.rewards), "num rewards", `${account.rewards} wei`);
    cell(row, eth(account.fees), "num fees", `${account.fees} wei (closing and relaying)`);
    for (const n of rounds) {
      const sub = byKey.get(`${n}|${account.address}`);
      const td = cell(row, "", "num reward");
      td.dataset.round = String(n);
      if (!sub) { td.textContent = "·"; td.title = "no submission"; continue; }
      td.textContent = eth(sub.reward);
      const detail = document.createElement("span");
      detail.className = "sub";
      detail.textContent = `${sub.counted ? sub.tier : "left out"} · d ${integer(sub.distance)}`;
      td.appendChild(detail);
      td.title = sub.note || `${sub.reward} wei`;
      if (!sub.counted) td.classList.add("out");
    }
  }
}

function drawRounds(s) {
  const table = $("rounds");
  const columns = [
    { label: "round" }, { label: "status" }, { label: "submissions", num: true },
    { label: "model" }, { label: "test accuracy", num: true }, { label: "rewards", num: true },
    { label: "fees", num: true }, { label: "gas: submissions", num: true },
    { label: "closes", num: true }, { label: "total", num: true },
  ];
  header(table, columns);
  const body = table.tBodies[0];
  body.textContent = "";
  const rounds = [...(s.rounds || [])].reverse();
  if (!rounds.length) empty(table, columns.length, "no round yet");
  for (const r of rounds) {
    const row = body.insertRow();
    row.dataset.round = String(r.number);
    cell(row, String(r.number), "number");
    cell(row, r.status, "status");
    const counted = r.status === "closed" || r.status === "abandoned" ? r.counted : r.settled - r.left_out;
    cell(row, r.left_out ? `${counted} (+${r.left_out} left out)` : String(counted), "num");
    cell(row, r.model_version === null ? "–" : `v${r.model_version}`, "mono model", r.model_hash || "");
    const acc = cell(row, r.accuracy === null ? (r.accuracy_note ? "not evaluated" : "–") : percent(r.accuracy), "num accuracy");
    acc.title = r.accuracy_note || (r.accuracy_source ? `model ${r.accuracy_source}` : "");
    cell(row, eth(r.rewards), "num", `${r.rewards} wei`);
    cell(row, eth(r.fees), "num", `${r.fees} wei`);
    cell(row, integer(r.gas.submissions), "num");
    cell(row, integer(r.gas.closes), "num");
    cell(row, integer(r.gas.total), "num gas");
  }
}

const SUBMISSION_ROWS = 200; // the latest; a long federation settles thousands

function drawSubmissions(s) {
  const table = $("submissions");
  const columns = [
    { label: "round" }, { label: "client" }, { label: "samples", num: true },
    { label: "distance", num: true }, { label: "alignment", num: true }, { label: "tier" },
    { label: "reward", num: true }, { label: "counted" },
  ];
  header(table, columns);
  const body = table.tBodies[0];
  body.textContent = "";
  const all = s.submissions || [];
  const rows = all.slice(-SUBMISSION_ROWS).reverse();
  if (!rows.length) empty(table, columns.length, "no settled submission yet");
  setText("submissions-count", all.length > rows.length
    ? `The latest ${rows.length} of ${all.length}.` : "");
  for (const sub of rows) {
    const row = body.insertRow();
    row.dataset.round = String(sub.round);
    row.dataset.client = sub.client;
    cell(row, String(sub.round));
    cell(row, short(sub.client) + (sub.relayed ? " (relayed)" : ""), "mono client", sub.client);
    cell(row, integer(sub.sample_count), "num");
    cell(row, integer(sub.distance), "num");
    cell(row, sub.alignment === null ? "–" : (sub.alignment >= 0 ? "+" : "") + sub.alignment.toFixed(3), "num");
    cell(row, sub.tier);
    cell(row, eth(sub.reward), "num", `${sub.reward} wei`);
    const verdict = cell(row, sub.counted ? "yes" : "left out", sub.counted ? "ok verdict" : "out verdict");
    if (sub.note) {
      const why = document.createElement("span");
      why.className = "sub why";
      why.textContent = sub.note;
      verdict.appendChild(why);
    }
  }
}

// ------------------------------------------------------------------ charts

function chartOptions(yTitle, stacked) {
  return {
    responsive: true,
    maintainAspectRatio: false,
    animation: false,
    interaction: { mode: "index", intersect: false },
    plugins: { legend: { display: stacked, position: "bottom", labels: { boxWidth: 12 } } },
    scales: {
      x: { stacked },
      y: { stacked, beginAtZero: stacked, title: { display: true, text: yTitle } },
    },
  };
}

function drawCharts(s) {
  if (typeof Chart === "undefined") return; // the library failed to load: the tables still work
  const points = s.accuracy || [];
  const labels = points.map((p) => (p.version === 0 ? "v0 (initial)" : `v${p.version} (round ${p.round})`));
  const values = points.map((p) => (p.accuracy === null ? null : Number((100 * p.accuracy).toFixed(2))));
  if (!charts.accuracy) {
    charts.accuracy = new Chart($("chart-accuracy"), {
      type: "line",
      data: { labels: [], datasets: [{ label: "test accuracy %", data: [], borderColor: "#2f6fde",
        backgroundColor: "#2f6fde", tension: 0, pointRadius: 4, spanGaps: false }] },
      options: chartOptions("%", false),
    });
  }
  charts.accuracy.options.plugins.tooltip = {
    callbacks: { afterLabel: (item) => points[item.dataIndex].source || points[item.dataIndex].note || "" },
  };
  charts.accuracy.data.labels = labels;
  charts.accuracy.data.datasets[0].data = values;
  charts.accuracy.update("none");

  const rounds = s.rounds || [];
  if (!charts.gas) {
    charts.gas = new Chart($("chart-gas"), {
      type: "bar",
      data: { labels: [], datasets: [
        { label: "submissions", data: [], backgroundColor: "#2f6fde" },
        { label: "closes", data: [], backgroundColor: "#9ad1b0" },
        { label: "other", data: [], backgroundColor: "#c3cad6" },
      ] },
      options: chartOptions("gas", true),
    });
  }
  charts.gas.data.labels = rounds.map((r) => `round ${r.number}`);
  charts.gas.data.datasets[0].data = rounds.map((r) => r.gas.submissions);
  charts.gas.data.datasets[1].data = rounds.map((r) => r.gas.closes);
  charts.gas.data.datasets[2].data = rounds.map((r) => r.gas.other);
  charts.gas.update("none");
}

// ------------------------------------------------------------------ the whole page

function drawFooter(s) {
  const n = s.node;
  const p = s.parameters;
  const from = p ? `events from block ${integer(p.first_block)} (the coordinator's creation)` : "events";
  setText("footer", `Everything on this page is read from the chain at ${n.url}: ${from} to block ` +
    `${integer(n.read_block)}, the calldata of the transactions that made each model, and the ` +
    `contract's free calls. No database. Snapshot ${s.revision} at ${clock(s.server_time)}.` +
    (p ? ` Deployment (coordinator and initial model): ${integer(p.deployment_gas)} gas.` : ""));
}

function draw(s) {
  drawHeader(s);
  drawStatus(s);
  drawFooter(s);
  if (!s.parameters) return;
  drawRound(s);
  drawModel(s);
  drawPool(s);
  drawClients(s);
  drawRounds(s);
  drawSubmissions(s);
  drawCharts(s);
}

function take(text) {
  const snapshot = JSON.parse(text);
  if (!snapshot.deployment) return;
  state.snapshot = snapshot;
  state.receivedAt = Date.now() / 1000;
  draw(snapshot);
}

function connect() {
  const source = new EventSource("/api/stream");
  source.addEventListener("snapshot", (event) => {
    state.streamUp = true;
    take(event.data);
  });
  source.addEventListener("open", () => { state.streamUp = true; });
  source.addEventListener("error", () => {
    state.streamUp = false;
    if (state.snapshot) drawStatus(state.snapshot);
    else { $("live").className = "pill pill-down"; $("live").textContent = "dashboard server unreachable: reconnecting…"; }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  fetch("/api/snapshot").then((r) => r.text()).then(take).catch(() => {});
  connect();
  setInterval(drawCountdown, 1000);
});
