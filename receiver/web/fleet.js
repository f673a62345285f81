// The fleet page and a gateway's page: plain JS, no framework; both read the JSON API.
"use strict";
const $ = (id) => document.getElementById(id);
function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => "&#" + c.charCodeAt(0) + ";");
}
function ago(seconds) {
  if (seconds === null || seconds === undefined) return "never";
  const s = Math.max(0, seconds);
  if (s < 90) return Math.round(s) + " s";
  if (s < 5400) return Math.round(s / 60) + " min";
  if (s < 172800) return Math.round(s / 3600) + " h";
  return Math.round(s / 86400) + " d";
}
function utc(t) {
  return t === null || t === undefined ? "—" : new Date(t * 1000).toISOString().slice(0, 16).replace("T", " ") + " UTC";
}
function stateBadge(row) {
  return `<span class="badge st-${esc(row.state)}">${esc(row.state)}</span>`;
}
function models(row) {
  const names = Object.entries(row.models);
  return names.length ? names.map(([a, m]) => `${esc(a)}: <span class="mono">${esc(m)}</span>`).join("<br>") : "—";
}
function holes(row) {
  return row.holes ? `<span class="bad">${row.holes} (${row.missing_seqs} seqs)</span>` : "0";
}
async function getJson(url) {
  const response = await fetch(url);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

// --- fleet ---------------------------------------------------------------------------------
let fleetPage = 1;
function fleetRow(row, now) {
  const alarms = row.alarm_assets.map((a) => esc(a.asset)).join(", ");
  const cls = row.alarm_assets.length ? "alarm" : row.state === "offline" ? "offline" : "";
  return `<tr class="${cls}" data-gateway="${esc(row.gateway)}">` +
    `<td><a href="/gateways/${encodeURIComponent(row.gateway)}">${esc(row.gateway)}</a></td>` +
    `<td>${stateBadge(row)}</td><td>${row.last_seen === null ? "never" : ago(now - row.last_seen) + " ago"}</td>` +
    `<td>${row.lag_s === null ? "—" : ago(row.lag_s)}</td><td>${holes(row)}</td>` +
    `<td class="alarms">${alarms || "—"}</td><td>${row.open_findings || "—"}</td><td class="small">${models(row)}</td></tr>`;
}
async function loadFleet() {
  const q = $("search").value.trim();
  const params = new URLSearchParams({ page: fleetPage, per_page: 100 });
  if (q) params.set("q", q);
  try {
    const body = await getJson("/api/fleet?" + params);
    const t = body.totals;
    $("totals").textContent = `${t.gateways} gateways · ${t.online} online · ${t.offline} offline · ` +
      `${t.in_alarm} in alarm (${t.assets_in_alarm} machines) · ${t.open_findings} open drift findings · ${t.with_holes} with holes`;
    $("rows").innerHTML = body.gateways.map((row) => fleetRow(row, body.now)).join("");
    $("pager").textContent = `${body.matching} matching · page ${body.page} of ${body.pages}`;
    $("prev").disabled = body.page <= 1;
    $("next").disabled = body.page >= body.pages;
    $("error").textContent = "";
    document.body.dataset.loaded = "1";
  } catch (error) {
    $("error").textContent = "cannot load the fleet: " + error.message;
  }
}
function startFleet() {
  let typing = null;
  $("search").addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => { fleetPage = 1; loadFleet(); }, 200);
  });
  $("prev").addEventListener("click", () => { fleetPage -= 1; loadFleet(); });
  $("next").addEventListener("click", () => { fleetPage += 1; loadFleet(); });
  loadFleet();
  setInterval(loadFleet, 15000);
}

// --- a gateway -----------------------------------------------------------------------------
const COLOURS = ["#b91c1c", "#2563eb", "#15803d"];
function weeklyChart(weekly) {
  const series = Object.entries(weekly).filter(([, points]) => points.length);
  const all = series.flatMap(([, points]) => points);
  if (!all.length) return `<p class="small">no daily aggregates in the last weeks</p>`;
  const t0 = Math.min(...all.map((p) => p.week_start)), t1 = Math.max(...all.map((p) => p.week_start));
  const W = 400, H = 120, pad = 6;
  const x = (t) => pad + (t1 > t0 ? (t - t0) / (t1 - t0) : 0.5) * (W - 2 * pad);
  const lines = series.map(([name, points], i) => {
    const lo = Math.min(...points.map((p) => p.median)), hi = Math.max(...points.map((p) => p.median));
    const y = (v) => H - pad - (hi > lo ? (v - lo) / (hi - lo) : 0.5) * (H - 2 * pad);
    const path = points.map((p, j) => `${j ? "L" : "M"}${x(p.week_start).toFixed(1)},${y(p.median).toFixed(1)}`).join("");
    const dots = points.map((p) => `<circle cx="${x(p.week_start).toFixed(1)}" cy="${y(p.median).toFixed(1)}" r="2.5" fill="${COLOURS[i]}"><title>${esc(name)} week of ${utc(p.week_start).slice(0, 10)}: ${p.median.toPrecision(4)} (${p.days} days)</title></circle>`).join("");
    return `<path d="${path}" fill="none" stroke="${COLOURS[i]}" stroke-width="1.5"/>${dots}`;
  }).join("");
  const legend = series.map(([name], i) => `<span style="color:${COLOURS[i]}">■ ${esc(name)}</span>`).join(" ");
  return `<svg class="trend" viewBox="0 0 ${W} ${H}" preserveAspectRatio="none">${lines}</svg>` +
    `<div class="small">weekly median of the daily medians, each scaled to its own range: ${legend}</div>`;
}
function findingCard(f) {
  return `<div class="finding"><b>${esc(f.asset)}</b>: ${esc(f.summary)}<br><i>${esc(f.recommendation)}</i>` +
    `<div class="small">${esc(f.cause)} · ${f.rate_pct_per_week.toFixed(1)} %/week · opened ${utc(f.opened_at)}</div>` +
    weeklyChart(f.weekly) + "</div>";
}
function assetRows(body) {
  const g = body.gateway;
  const names = new Set([...body.assets.map((a) => a.asset), ...Object.keys(g.models)]);
  return [...names].sort().map((asset) => {
    const alarm = g.alarm_assets.find((a) => a.asset === asset);
    const open = body.findings.filter((f) => f.asset === asset).length;
    const data = body.assets.find((a) => a.asset === asset);
    return `<tr class="${alarm ? "alarm" : ""}"><td>${esc(asset)}</td><td class="mono">${esc(g.models[asset] ?? "—")}</td>` +
      `<td>${alarm ? `<span class="bad">in alarm since ${utc(alarm.since)}</span>` : "ok"}</td><td>${open || "—"}</td>` +
      `<td>${data ? ago(body.now - data.last_received) + " ago" : "—"}</td></tr>`;
  }).join("");
}
async function loadGateway() {
  const id = decodeURIComponent(location.pathname.split("/").pop());
  document.title = id + " · fleet";
  $("gw").textContent = id;
  try {
    const body = await getJson("/api/gateways/" + encodeURIComponent(id));
    const g = body.gateway;
    $("state").innerHTML = stateBadge(g);
    $("facts").innerHTML = `last seen ${g.last_seen === null ? "never" : ago(body.now - g.last_seen) + " ago"} · ` +
      `uplink lag ${g.lag_s === null ? "—" : ago(g.lag_s)} · holes ${holes(g)} · version ${esc(g.version ?? "—")}`;
    $("assets").innerHTML = assetRows(body);
    $("findings").innerHTML = body.findings.map(findingCard).join("") || "<p>no open drift findings</p>";
    $("alerts").innerHTML = body.alerts.map((a) => `<div class="alert sev-${esc(a.severity)}">${utc(a.t)} ${esc(a.asset)} ${esc(a.kind)}: ${esc(a.message)}</div>`).join("") || "<p>no alerts</p>";
    $("error").textContent = "";
    document.body.dataset.loaded = "1";
  } catch (error) {
    $("error").textContent = "cannot load the gateway: " + error.message;
  }
}
function startGateway() {
  loadGateway();
  setInterval(loadGateway, 15000);
}

if (document.body.dataset.page === "fleet") startFleet();
else if (document.body.dataset.page === "gateway") startGateway();
