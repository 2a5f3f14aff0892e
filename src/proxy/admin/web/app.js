// Switchyard's live dashboard: plain JavaScript, no dependencies, served from the binary.
// Signs in with an admin token (kept in sessionStorage for this tab only), reads the live state
// from the event stream (GET /api/v1/events, read with fetch so the token goes in the
// Authorization header, never in a URL), draws the rate charts as SVG and sends server changes
// with PATCH /api/v1/pools/POOL/servers/ADDRESS.
"use strict";

const COLORS = ["#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2", "#be185d", "#4d7c0f"];
const WINDOW = 300; // seconds shown in the charts

const state = {
  token: sessionStorage.getItem("switchyard-token") || "",
  readOnly: true,
  series: [], // [{t, pools: {name: [requests, errors]}}], one per second
  events: new Map(), // seq -> event
  rows: new Map(), // "pool/address" -> row elements
  abort: null,
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) e.append(c);
  return e;
}

async function api(method, path, body) {
  const opts = { method, headers: { Authorization: "Bearer " + state.token } };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const resp = await fetch(path, opts);
  let data = null;
  try { data = await resp.json(); } catch (_) { /* not JSON */ }
  if (!resp.ok) {
    const err = new Error((data && data.error) || resp.statusText);
    err.status = resp.status;
    throw err;
  }
  return data;
}

// --- sign-in -------------------------------------------------------------------------------

async function signIn(token) {
  state.token = token;
  const who = await api("GET", "/api/v1/whoami");
  sessionStorage.setItem("switchyard-token", token);
  state.readOnly = who.read_only;
  $("who").textContent = who.name + (who.read_only ? " (read-only)" : "");
  $("login-view").classList.add("hidden");
  $("dashboard").classList.remove("hidden");
  $("logout").classList.remove("hidden");
  try {
    const s = await api("GET", "/api/v1/series");
    state.series = s.samples.map((x) => ({ t: x.unix_ms, pools: x.pools }));
  } catch (_) { state.series = []; }
  stream();
}

function signOut() {
  sessionStorage.removeItem("switchyard-token");
  state.token = "";
  if (state.abort) state.abort.abort();
  location.reload();
}

// --- the event stream ----------------------------------------------------------------------

async function stream() {
  const controller = new AbortController();
  state.abort = controller;
  try {
    const resp = await fetch("/api/v1/events", {
      headers: { Authorization: "Bearer " + state.token, Accept: "text/event-stream" },
      signal: controller.signal,
    });
    if (resp.status === 401) return signOut();
    if (!resp.ok || !resp.body) throw new Error("stream: " + resp.status);
    setLive(true);
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const message = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = message.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
        if (data) render(JSON.parse(data));
      }
    }
  } catch (e) {
    if (controller.signal.aborted) return;
  }
  setLive(false);
  setTimeout(stream, 2000);
}

function setLive(on) {
  const live = $("live");
  live.textContent = on ? "live" : "reconnecting";
  live.className = "live " + (on ? "on" : "off");
}

// --- rendering -----------------------------------------------------------------------------

function render(msg) {
  const s = msg.status;
  $("summary").textContent = `v${s.version} · up ${duration(s.uptime_s)} · ${s.workers} workers · ` +
    `reloads ${s.reloads.success} ok / ${s.reloads.failure} refused` +
    (s.overrides_active ? " · runtime changes active" : "");
  if (msg.sample) {
    const last = state.series[state.series.length - 1];
    if (!last || last.t !== msg.sample.unix_ms) state.series.push({ t: msg.sample.unix_ms, pools: msg.sample.pools });
    while (state.series.length > 600) state.series.shift();
  }
  renderPools(msg.pools);
  renderCharts(msg.pools.map((p) => p.name));
  for (const e of msg.events || []) state.events.set(e.seq, e);
  renderEvents();
}

function duration(secs) {
  if (secs < 120) return secs + " s";
  if (secs < 7200) return Math.floor(secs / 60) + " min";
  if (secs < 172800) return Math.floor(secs / 3600) + " h";
  return Math.floor(secs / 86400) + " d";
}

function ago(check) {
  if (!check) return "–";
  const secs = Math.max(0, Math.round((Date.now() - check.unix_ms) / 1000));
  return (check.ok ? "ok" : "failed" + (check.reason ? ": " + check.reason : "")) + ` · ${secs}s ago`;
}

function renderPools(pools) {
  const container = $("pools");
  const seen = new Set();
  for (const pool of pools) {
    let card = container.querySelector(`.pool[data-pool="${CSS.escape(pool.name)}"]`);
    if (!card) {
      card = el("div", { class: "pool", "data-pool": pool.name },
        el("h2", {}, pool.name, el("span", { class: "muted" })),
        el("table", {},
          el("thead", {}, el("tr", {}, ...["Server", "State", "Health", "Weight", "Active", "Requests",
            "Errors", "p50 ms", "p99 ms", "Last check", ""].map((h) => el("th", {}, h)))),
          el("tbody")));
      container.append(card);
    }
    card.querySelector("h2 .muted").textContent =
      `${pool.scheduler} · ${pool.servers_available}/${pool.servers.length} available · ` +
      `${pool.requests} requests · ${pool.retries} retries` + (pool.health_check ? ` · checks: ${pool.health_check}` : "");
    const tbody = card.querySelector("tbody");
    for (const server of pool.servers) {
      const key = pool.name + "/" + server.address;
      seen.add(key);
      let row = state.rows.get(key);
      if (!row) {
        row = makeRow(pool.name, server.address);
        state.rows.set(key, row);
        tbody.append(row.tr);
      }
      updateRow(row, server);
    }
  }
  for (const [key, row] of state.rows) {
    if (!seen.has(key)) { row.tr.remove(); state.rows.delete(key); }
  }
  for (const card of container.querySelectorAll(".pool")) {
    if (!pools.some((p) => p.name === card.dataset.pool)) card.remove();
  }
}

function makeRow(pool, address) {
  const cells = {};
  const td = (name, cls = "") => (cells[name] = el("td", { class: cls }));
  const tr = el("tr", { "data-server": address, "data-pool": pool },
    td("address"), td("state"), td("health"), td("weight", "weight"), td("active", "num"),
    td("requests", "num"), td("errors", "num"), td("p50", "num"), td("p99", "num"), td("check"),
    td("actions", "actions"));
  cells.address.textContent = address;
  const badge = el("span", { class: "state" });
  cells.state.append(badge);
  const changed = el("span", { class: "changed", title: "changed at run time (admin API)" });
  cells.address.append(changed);
  const weight = el("input", { type: "number", min: 0, max: 256, "data-role": "weight" });
  const setWeight = el("button", { type: "button", "data-action": "weight", textContent: "Set" });
  cells.weight.append(weight, " ", setWeight);
  const drain = el("button", { type: "button", "data-action": "drain" });
  const maint = el("button", { type: "button", "data-action": "maintenance" });
  cells.actions.append(drain, maint);
  const row = { tr, cells, badge, changed, weight, setWeight, drain, maint, server: null };
  drain.addEventListener("click", () => change(pool, address, { drain: !row.server.drain }));
  maint.addEventListener("click", () => change(pool, address, { maintenance: !row.server.maintenance }));
  setWeight.addEventListener("click", () => {
    const w = Number(weight.value);
    if (Number.isInteger(w) && w >= 0 && w <= 256) change(pool, address, { weight: w });
    else showError("weight must be 0..256");
  });
  return row;
}

function updateRow(row, s) {
  row.server = s;
  row.badge.textContent = s.state;
  row.badge.className = "state " + s.state;
  row.changed.textContent = s.runtime_change ? "●" : "";
  row.cells.health.textContent = s.health;
  if (document.activeElement !== row.weight) row.weight.value = s.weight;
  row.cells.active.textContent = s.active;
  row.cells.requests.textContent = s.requests;
  row.cells.errors.textContent = s.errors_total;
  row.cells.p50.textContent = s.latency_ms ? s.latency_ms.p50.toFixed(2) : "–";
  row.cells.p99.textContent = s.latency_ms ? s.latency_ms.p99.toFixed(2) : "–";
  row.cells.check.textContent = ago(s.last_check);
  row.cells.check.className = s.last_check && !s.last_check.ok ? "check-fail" : "";
  row.drain.textContent = s.drain ? "Undrain" : "Drain";
  row.maint.textContent = s.maintenance ? "End maintenance" : "Maintenance";
  for (const b of [row.drain, row.maint, row.setWeight]) b.classList.toggle("hidden", state.readOnly);
  row.weight.disabled = state.readOnly;
}

async function change(pool, address, patch) {
  showError("");
  const path = `/api/v1/pools/${encodeURIComponent(pool)}/servers/${encodeURIComponent(address)}`;
  try {
    const server = await api("PATCH", path, patch);
    const row = state.rows.get(pool + "/" + address);
    if (row) updateRow(row, server);
  } catch (e) {
    showError(`${pool}/${address}: ${e.message}`);
  }
}

function showError(text) {
  $("action-error").textContent = text;
}

function renderEvents() {
  const list = $("events");
  const events = [...state.events.values()].sort((a, b) => b.seq - a.seq).slice(0, 100);
  list.replaceChildren(...events.map((e) => {
    const cls = e.kind + (e.kind === "health" && / UP/.test(e.text) ? " up" : "");
    return el("li", { class: cls }, el("time", {}, new Date(e.unix_ms).toLocaleTimeString()),
      el("span", { class: "kind" }, e.kind), e.text);
  }));
}

// --- charts (SVG) --------------------------------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

function renderCharts(pools) {
  const now = state.series.length ? state.series[state.series.length - 1].t : Date.now();
  const points = state.series.filter((s) => s.t > now - WINDOW * 1000);
  drawChart($("chart-requests"), pools, points, 0, now);
  drawChart($("chart-errors"), pools, points, 1, now);
  $("legend").replaceChildren(...pools.map((p, i) => {
    const span = el("span", {}, p);
    span.style.setProperty("--swatch", COLORS[i % COLORS.length]);
    return span;
  }));
}

function niceMax(v) {
  if (v <= 1) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function drawChart(chart, pools, points, index, now) {
  const W = 600, H = 180, left = 40, bottom = 16, top = 6;
  let max = 0;
  for (const p of points) for (const name of pools) max = Math.max(max, (p.pools[name] || [0, 0])[index]);
  max = niceMax(max);
  const x = (t) => left + (W - left - 4) * (1 - (now - t) / (WINDOW * 1000));
  const y = (v) => top + (H - top - bottom) * (1 - v / max);
  const children = [];
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    children.push(svg("line", { class: "grid", x1: left, x2: W, y1: y(v), y2: y(v) }));
    const label = svg("text", { class: "axis", x: left - 6, y: y(v) + 4, "text-anchor": "end" });
    label.textContent = Number.isInteger(v) ? v : v.toFixed(2);
    children.push(label);
  }
  for (const m of [5, 4, 3, 2, 1, 0]) {
    const anchor = m === 0 ? "end" : m === 5 ? "start" : "middle";
    const label = svg("text", { class: "axis", x: x(now - m * 60000), y: H - 2, "text-anchor": anchor });
    label.textContent = m ? `-${m} min` : "now";
    children.push(label);
  }
  pools.forEach((name, i) => {
    const coords = points.map((p) => `${x(p.t).toFixed(1)},${y((p.pools[name] || [0, 0])[index]).toFixed(1)}`);
    if (coords.length) children.push(svg("polyline", { points: coords.join(" "), stroke: COLORS[i % COLORS.length] }));
  });
  chart.replaceChildren(...children);
}

// --- start ---------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("login-error").textContent = "";
    try {
      await signIn($("token").value.trim());
    } catch (e) {
      state.token = "";
      $("login-error").textContent = e.status === 401 ? "That token is not valid." :
        e.status === 429 ? "Too many failed attempts; wait a minute." : "Cannot sign in: " + e.message;
    }
  });
  $("logout").addEventListener("click", signOut);
  if (state.token) signIn(state.token).catch(() => sessionStorage.removeItem("switchyard-token"));
});
