// History and spectrum charts of the status page, drawn as plain SVG (no library: works on a LAN
// without internet, and every axis value is a <text> a test or a screen reader can read).
// Data: /api/history/<asset> (downsampled on the gateway: min/max/mean per bucket) and
// /api/spectrum/<asset>/<channel> (latest Welch PSD, healthy baseline, bands, shaft harmonics),
// /api/envelope/<asset> (the latest diagnosis's envelope spectrum, defect frequencies to mark).
"use strict";
(() => {
const NS = "http://www.w3.org/2000/svg";
const M = {left: 62, right: 10, top: 20, bottom: 38};  // room for the title, axes' values and labels
const HISTORY_REFRESH_MS = {"1h": 30000, "24h": 300000, "7d": 900000};
const SPECTRUM_REFRESH_MS = 5000;
const COLOURS = {score: "#2563eb", threshold: "#b91c1c", feature: "#0f766e", baseline: "#9ca3af",
  psd: "#2563eb", episode: "#fecaca", warning: "#d97706", critical: "#b91c1c"};
const esc = s => String(s ?? "").replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
const state = {asset: null, range: "1h", chosen: false, channel: null, index: null, spectra: null,
  history: null, spectrum: null, envelope: null, zone: null};
const DEFECT_COLOURS = {BPFO: "#b91c1c", BPFI: "#7c3aed", BSF: "#0f766e", FTF: "#6b7280"};

// --- SVG helpers ---------------------------------------------------------------------------

function el(name, attrs, text) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function svgBox(parent, height, label) {
  const width = Math.max(280, Math.floor(parent.clientWidth || 600));
  const svg = el("svg", {viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": label,
    style: `width:100%;max-width:${width}px;height:${height}px;display:block`});
  parent.appendChild(svg);
  return {svg, width, height, x0: M.left, x1: width - M.right, y0: height - M.bottom, y1: M.top};
}

function linear(d0, d1, r0, r1) {
  const span = d1 - d0 || 1;
  return v => r0 + (v - d0) / span * (r1 - r0);
}

function niceStep(span, count) {
  const raw = span / Math.max(1, count), power = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map(m => m * power).find(s => s >= raw) || raw;
}

function linearTicks(lo, hi, count) {
  const step = niceStep(hi - lo, count), out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function decadeTicks(lo, hi) {
  const out = [];
  for (let k = Math.floor(Math.log10(lo)); k <= Math.ceil(Math.log10(hi)); k++) {
    const v = 10 ** k;
    if (v >= lo && v <= hi) out.push(v);
  }
  return out.length >= 2 ? out : [lo, hi];
}

// A tick value with as many decimals as the step between ticks needs (so 39.99, 40, 40.01 differ).
function valueText(v, step) {
  if (v === 0) return "0";
  const a = Math.abs(v), digits = Math.max(0, Math.min(6, -Math.floor(Math.log10(step || a))));
  if (a >= 1e5 || a < 1e-3) return v.toExponential(step ? Math.max(0, Math.floor(Math.log10(a)) - Math.floor(Math.log10(step))) : 0).replace("e+", "e");
  return v.toFixed(digits);
}

function title(box, text) {
  box.svg.appendChild(el("text", {class: "chart-title", x: box.x0, y: 13, "font-size": 12, "font-weight": 600}, text));
}

// Value axis: linear or log (decades); returns the scale.
function yAxis(box, lo, hi, log, label) {
  const f = log ? v => Math.log10(Math.max(v, lo)) : v => v;
  const scale = (s => v => s(f(v)))(linear(f(lo), f(hi), box.y0, box.y1));
  const ticks = log ? decadeTicks(lo, hi) : linearTicks(lo, hi, Math.max(2, Math.round((box.y0 - box.y1) / 35)));
  const step = log || ticks.length < 2 ? 0 : ticks[1] - ticks[0];
  const g = el("g", {class: "axis y-axis"});
  g.appendChild(el("line", {x1: box.x0, x2: box.x0, y1: box.y1, y2: box.y0, stroke: "#6b7280"}));
  for (const v of ticks) {
    const y = scale(v).toFixed(1);
    g.appendChild(el("line", {x1: box.x0, x2: box.x1, y1: y, y2: y, stroke: "#e5e7eb"}));
    g.appendChild(el("text", {class: "tick", x: box.x0 - 4, y, "text-anchor": "end", "dominant-baseline": "middle", "font-size": 10}, valueText(v, step)));
  }
  g.appendChild(el("text", {class: "axis-label", transform: `translate(11 ${(box.y0 + box.y1) / 2}) rotate(-90)`, "text-anchor": "middle", "font-size": 11}, label));
  box.svg.appendChild(g);
  return scale;
}

// Horizontal axis from ticks already chosen ([value, text] pairs).
function xAxis(box, scale, ticks, label) {
  const g = el("g", {class: "axis x-axis"});
  g.appendChild(el("line", {x1: box.x0, x2: box.x1, y1: box.y0, y2: box.y0, stroke: "#6b7280"}));
  for (const [v, text] of ticks) {
    const x = scale(v).toFixed(1);
    g.appendChild(el("line", {x1: x, x2: x, y1: box.y0, y2: box.y0 + 4, stroke: "#6b7280"}));
    g.appendChild(el("text", {class: "tick", x, y: box.y0 + 15, "text-anchor": "middle", "font-size": 10}, text));
  }
  g.appendChild(el("text", {class: "axis-label", x: (box.x0 + box.x1) / 2, y: box.height - 4, "text-anchor": "middle", "font-size": 11}, label));
  box.svg.appendChild(g);
}

// --- time in the gateway's zone -------------------------------------------------------------

function zoneFormatter(info, options) {
  try {
    const f = new Intl.DateTimeFormat("en-GB", {...options, timeZone: info.timezone, hourCycle: "h23"});
    return t => f.format(new Date(t * 1000));
  } catch (e) {  // a zone the browser does not know: shift by the gateway's offset, format as UTC
    const f = new Intl.DateTimeFormat("en-GB", {...options, timeZone: "UTC", hourCycle: "h23"});
    return t => f.format(new Date((t + info.utc_offset_s) * 1000));
  }
}

const TIME_STEPS = [60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800];

function timeTicks(start, end, info, count) {
  const step = TIME_STEPS.find(s => (end - start) / s <= count) || TIME_STEPS[TIME_STEPS.length - 1];
  const daily = step >= 86400;
  const fmt = zoneFormatter(info, daily ? {day: "2-digit", month: "short"} : step >= 21600 ? {day: "2-digit", hour: "2-digit", minute: "2-digit"} : {hour: "2-digit", minute: "2-digit"});
  const offset = info.utc_offset_s || 0, ticks = [];
  for (let local = Math.ceil((start + offset) / step) * step; local - offset <= end; local += step) ticks.push([local - offset, fmt(local - offset)]);
  return ticks;
}

// --- history ---------------------------------------------------------------------------------

// Paths of consecutive buckets: a bucket without data breaks the line.
function runs(series, bucket) {
  const out = [];
  let run = [];
  series.t.forEach((t, i) => {
    if (run.length && t - series.t[run[run.length - 1]] > bucket * 1.5) { out.push(run); run = []; }
    if (series.mean[i] !== null) run.push(i);
  });
  if (run.length) out.push(run);
  return out;
}

function drawSeries(box, series, bucket, x, y, colour, cls) {
  for (const run of runs(series, bucket)) {
    const upper = run.map(i => `${x(series.t[i]).toFixed(1)},${y(series.max[i]).toFixed(1)}`);
    const lower = run.slice().reverse().map(i => `${x(series.t[i]).toFixed(1)},${y(series.min[i]).toFixed(1)}`);
    box.svg.appendChild(el("polygon", {class: `${cls} envelope`, points: upper.concat(lower).join(" "), fill: colour, "fill-opacity": 0.18, stroke: "none"}));
    const mean = run.map(i => `${x(series.t[i]).toFixed(1)},${y(series.mean[i]).toFixed(1)}`);
    box.svg.appendChild(el("polyline", {class: cls, points: mean.join(" "), fill: "none", stroke: colour, "stroke-width": 1.5}));
    if (run.length === 1) box.svg.appendChild(el("circle", {class: `${cls} dot`, cx: x(series.t[run[0]]).toFixed(1), cy: y(series.mean[run[0]]).toFixed(1), r: 2.5, fill: colour}));
  }
}

function extent(arrays, positive) {
  const values = arrays.flat().filter(v => v !== null && Number.isFinite(v) && (!positive || v > 0));
  if (!values.length) return null;
  let lo = Math.min(...values), hi = Math.max(...values);
  if (lo === hi) { lo -= Math.abs(lo) * 0.1 || 1; hi += Math.abs(hi) * 0.1 || 1; }
  return [lo, hi];
}

function historyChart(parent, h, series, opts) {
  const box = svgBox(parent, opts.height, opts.title);
  box.svg.classList.add("history-chart");
  title(box, opts.title);
  const x = linear(h.start, h.end, box.x0, box.x1);
  for (const ep of h.episodes) {  // alarm episodes behind everything
    const a = x(Math.max(ep.start, h.start)), b = x(ep.end === null ? h.end : Math.min(ep.end, h.end));
    const rect = el("rect", {class: "episode", x: a.toFixed(1), y: box.y1, width: Math.max(2, b - a).toFixed(1), height: box.y0 - box.y1, fill: COLOURS.episode});
    rect.appendChild(el("title", {}, `alarm (${ep.severity}) ${opts.fmt(ep.start)} – ${ep.end === null ? "still open" : opts.fmt(ep.end)}`));
    box.svg.appendChild(rect);
  }
  const range = extent([series.min, series.max, opts.extra || []], opts.log) || [opts.log ? 0.1 : 0, 1];
  const log = opts.log && range[0] > 0 && range[1] / range[0] > 20;
  const lo = log ? range[0] / 1.5 : range[0] - (range[1] - range[0]) * 0.05;
  const hi = log ? range[1] * 1.5 : range[1] + (range[1] - range[0]) * 0.05;
  const y = yAxis(box, lo, hi, log, opts.yLabel + (log ? " (log)" : ""));
  xAxis(box, x, timeTicks(h.start, h.end, opts.zone, Math.max(2, Math.floor((box.x1 - box.x0) / 70))), `time (${opts.zone.zone_label}${opts.zone.timezone !== opts.zone.zone_label ? ", " + opts.zone.timezone : ""})`);
  if (opts.threshold) {
    // Each bucket's threshold as a step a bucket wide, so a lone bucket shows one too.
    const half = (x(h.start + h.bucket_s) - x(h.start)) / 2 + 1;
    const pts = series.t.flatMap((t, i) => series.threshold[i] === null ? [] : [`${(x(t) - half).toFixed(1)},${y(series.threshold[i]).toFixed(1)}`, `${(x(t) + half).toFixed(1)},${y(series.threshold[i]).toFixed(1)}`]);
    if (pts.length) box.svg.appendChild(el("polyline", {class: "threshold", points: pts.join(" "), fill: "none", stroke: COLOURS.threshold, "stroke-dasharray": "5 3", "stroke-width": 1.2}));
  }
  drawSeries(box, series, h.bucket_s, x, y, opts.colour, opts.cls);
  if (!series.t.length) box.svg.appendChild(el("text", {class: "empty", x: (box.x0 + box.x1) / 2, y: (box.y0 + box.y1) / 2, "text-anchor": "middle", "font-size": 12}, "no data in this range"));
  if (opts.alerts) for (const a of h.alerts) {
    if (a.t < h.start || a.t > h.end) continue;
    const mark = el("path", {class: "alert-mark", d: `M${x(a.t).toFixed(1)},${box.y1 + 8} l-4,-8 h8 z`, fill: COLOURS[a.severity] || "#111"});
    mark.appendChild(el("title", {}, `${opts.fmt(a.t)} ${a.severity} ${a.kind}: ${a.message}`));
    box.svg.appendChild(mark);
  }
  return box;
}

function renderHistory(h) {
  const root = document.getElementById("history-charts");
  if (!root) return;
  root.textContent = "";
  const zone = {timezone: h.timezone, zone_label: h.zone_label, utc_offset_s: h.utc_offset_s};
  const fmt = zoneFormatter(zone, {month: "short", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit"});
  const s = h.score;
  historyChart(root, h, s, {height: 200, title: `${h.asset}: score against threshold`, yLabel: "score", log: true,
    threshold: true, alerts: true, extra: s.threshold, colour: COLOURS.score, cls: "score", zone, fmt});
  for (const f of h.features) {
    const quantity = f.name.slice(f.name.indexOf(".") + 1);
    const label = f.unit ? `${quantity} [${f.unit}]` : `${quantity} (ratio)`;
    historyChart(root, h, f, {height: 150, title: f.name, yLabel: label, log: false, colour: COLOURS.feature, cls: "feature", zone, fmt});
  }
  const notes = [`${Math.round(h.bucket_s)} s per point: line = mean, band = min to max; red dashed: threshold; shaded: alarm episodes; ▼ alerts (hover for text)`];
  if (h.features_sampled) notes.push("features: a few windows read per point (scores: every window)");
  if (h.contributors.length) notes.push(`the newest alarm names: ${h.contributors.join(", ")}`);
  if (h.alerts_left_off) notes.push(`${h.alerts_left_off} older alerts not marked`);
  root.appendChild(Object.assign(document.createElement("div"), {className: "small", textContent: notes.join(" · ")}));
}

// Fetch JSON into state[key] and draw it; a refusal or a network error is shown in its place.
async function load(url, key, draw, rootId, what) {
  try {
    const response = await fetch(url);
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || response.statusText);
    state[key] = body;
    draw(body);
  } catch (e) {
    const root = document.getElementById(rootId);
    if (root) root.textContent = `${what} not available: ${e.message}`;
  }
}

function loadHistory() {
  if (!state.asset) return;
  load(`/api/history/${encodeURIComponent(state.asset)}?range=${state.range}`, "history", renderHistory, "history-charts", "history");
}

// --- spectrum --------------------------------------------------------------------------------

function renderSpectrum(sp) {
  const root = document.getElementById("spectrum-chart");
  if (!root) return;
  root.textContent = "";
  if (sp.psd === null) { root.textContent = sp.reason; return; }
  const box = svgBox(root, 240, `${sp.asset} ${sp.channel} spectrum`);
  box.svg.classList.add("spectrum-chart");
  title(box, `${sp.asset} ${sp.channel}: Welch PSD`);
  const nyquist = sp.rate_hz / 2, x = linear(0, nyquist, box.x0, box.x1);
  const positive = [...sp.psd, ...(sp.baseline || [])].filter(v => v !== null && v > 0);
  const hi = positive.length ? Math.max(...positive) * 2 : 1;
  const lo = positive.length ? Math.max(Math.min(...positive), hi * 1e-9) / 2 : 1e-6;
  sp.bands_hz.forEach(([a, b], i) => {
    const band = el("rect", {class: "band", x: x(a).toFixed(1), y: box.y1, width: Math.max(1, x(b) - x(a)).toFixed(1), height: box.y0 - box.y1, fill: i % 2 ? "#eef2ff" : "#f8fafc"});
    band.appendChild(el("title", {}, `feature band ${a}–${b} Hz`));
    box.svg.appendChild(band);
    box.svg.appendChild(el("text", {class: "band-label", x: ((x(a) + x(b)) / 2).toFixed(1), y: box.y1 + 10, "text-anchor": "middle", "font-size": 9, fill: "#6b7280"}, `${a}–${b}`));
  });
  const y = yAxis(box, lo, hi, true, `PSD [${sp.psd_unit}] (log)`);
  xAxis(box, x, linearTicks(0, nyquist, Math.max(2, Math.floor((box.x1 - box.x0) / 60))).map((v, i, all) => [v, valueText(v, all[1] - all[0])]), "frequency [Hz]");
  const line = (values, cls, colour, width) => {
    const pts = sp.freqs_hz.map((f, i) => values[i] === null ? null : `${x(f).toFixed(1)},${y(Math.max(values[i], lo)).toFixed(1)}`).filter(Boolean);
    box.svg.appendChild(el("polyline", {class: cls, points: pts.join(" "), fill: "none", stroke: colour, "stroke-width": width}));
  };
  if (sp.baseline) line(sp.baseline, "baseline", COLOURS.baseline, 2.5);
  line(sp.psd, "psd", COLOURS.psd, 1.3);
  sp.harmonics_hz.forEach((f, i) => {
    const xh = x(f).toFixed(1);
    box.svg.appendChild(el("line", {class: "harmonic", x1: xh, x2: xh, y1: box.y1, y2: box.y0, stroke: "#d97706", "stroke-dasharray": "2 3"}));
    if (i < 10) box.svg.appendChild(el("text", {class: "harmonic-label", x: xh, y: box.y1 + 20, "text-anchor": "middle", "font-size": 9, fill: "#b45309"}, `${i + 1}×`));
  });
  const when = zoneFormatter(state.zone || {timezone: "UTC", utc_offset_s: 0}, {hour: "2-digit", minute: "2-digit", second: "2-digit"})(sp.window_end);
  const baseline = sp.baseline ? `grey: healthy baseline (mean of ${sp.baseline_windows} windows scored normal)` : "no healthy baseline yet (needs windows scored normal)";
  const speed = sp.speed_rpm ? `; orange: shaft harmonics at ${sp.speed_rpm} rpm` : "; no shaft speed configured (speed_rpm)";
  root.appendChild(Object.assign(document.createElement("div"), {className: "small", textContent: `window ending ${when}; blue: latest Welch PSD; ${baseline}; shaded: feature bands [Hz]${speed}`}));
}

function loadSpectrum() {
  if (!state.asset || !state.channel || document.hidden) return;
  load(`/api/spectrum/${encodeURIComponent(state.asset)}/${encodeURIComponent(state.channel)}`, "spectrum", renderSpectrum, "spectrum-chart", "spectrum");
  load(`/api/envelope/${encodeURIComponent(state.asset)}`, "envelope", renderEnvelope, "envelope-chart", "envelope spectrum");
}

// The squared-envelope spectrum the diagnosis read, with each bearing's defect frequencies
// (BPFO, BPFI, 2xBSF, FTF and harmonics) as dashed lines and the lines it found as dots.
function renderEnvelope(en) {
  const root = document.getElementById("envelope-chart");
  if (!root) return;
  root.textContent = "";
  if (en.freqs_hz === null) { root.textContent = en.reason; return; }
  const box = svgBox(root, 220, `${en.asset} envelope spectrum`);
  box.svg.classList.add("envelope-chart");
  title(box, `${en.asset} ${en.channel}: envelope spectrum, band ${Math.round(en.band_hz[0])}–${Math.round(en.band_hz[1])} Hz`);
  const top = en.freqs_hz[en.freqs_hz.length - 1] || 1, x = linear(0, top, box.x0, box.x1);
  const values = en.magnitude.filter(v => v !== null);
  const y = yAxis(box, 0, (Math.max(...values, 1e-12)) * 1.15, false, "magnitude [g²]");
  xAxis(box, x, linearTicks(0, top, Math.max(2, Math.floor((box.x1 - box.x0) / 60))).map((v, i, all) => [v, valueText(v, all[1] - all[0])]), "frequency [Hz]");
  for (const m of en.marks) {
    const family = m.name.replace(/^\d+x/, ""), xm = x(m.hz).toFixed(1), colour = DEFECT_COLOURS[family] || "#d97706";
    const mark = el("line", {class: "defect-mark", "data-name": m.name, x1: xm, x2: xm, y1: box.y1, y2: box.y0, stroke: colour, "stroke-dasharray": "3 3"});
    mark.appendChild(el("title", {}, `${m.bearing} ${m.name} ${m.hz.toFixed(1)} Hz`));
    box.svg.appendChild(mark);
    if (m.harmonic === 1) box.svg.appendChild(el("text", {class: "defect-label", x: xm, y: box.y1 + 10, "text-anchor": "middle", "font-size": 9, fill: colour}, `${m.name} ${Math.round(m.hz)}`));
  }
  const pts = en.freqs_hz.map((f, i) => en.magnitude[i] === null ? null : `${x(f).toFixed(1)},${y(en.magnitude[i]).toFixed(1)}`).filter(Boolean);
  box.svg.appendChild(el("polyline", {class: "envelope", points: pts.join(" "), fill: "none", stroke: COLOURS.psd, "stroke-width": 1.2}));
  for (const line of en.evidence) {
    const i = en.freqs_hz.findIndex(f => f >= line.found_hz);
    if (i < 0 || en.magnitude[i] === null) continue;
    const dot = el("circle", {class: "evidence", cx: x(line.found_hz).toFixed(1), cy: y(en.magnitude[i]).toFixed(1), r: 4, fill: "none", stroke: "#111", "stroke-width": 1.5});
    dot.appendChild(el("title", {}, `${line.name}: found ${line.found_hz.toFixed(1)} Hz, ${line.db_above_floor === null ? "?" : line.db_above_floor.toFixed(0)} dB above the floor`));
    box.svg.appendChild(dot);
  }
  const when = zoneFormatter(state.zone || {timezone: "UTC", utc_offset_s: 0}, {hour: "2-digit", minute: "2-digit", second: "2-digit"})(en.t);
  root.appendChild(Object.assign(document.createElement("div"), {className: "small envelope-words", textContent: `diagnosis of the window ending ${when}: ${en.words}. Dashed: defect frequencies (red BPFO, violet BPFI, teal 2xBSF, grey FTF, with harmonics); circles: the lines found.`}));
}

// --- controls --------------------------------------------------------------------------------

function options(values, selected) {
  return values.map(v => `<option value="${esc(v)}"${v === selected ? " selected" : ""}>${esc(v)}</option>`).join("");
}

function renderControls() {
  const history = document.getElementById("history"), spectrum = document.getElementById("spectrum");
  const names = state.index.assets.map(a => a.name);
  history.innerHTML = `<h2>History</h2><div class="small chart-controls"><label>asset <select id="history-asset">${options(names, state.asset)}</select></label>
${Object.keys(HISTORY_REFRESH_MS).map(r => `<button class="range" data-range="${r}"${r === state.range ? ' aria-pressed="true"' : ""}>${r}</button>`).join("")}</div><div id="history-charts"></div>`;
  const channels = (state.spectra.assets.find(a => a.name === state.asset) || {channels: []}).channels;
  if (!channels.includes(state.channel)) state.channel = channels[0] || null;
  spectrum.innerHTML = channels.length ? `<h2>Spectrum</h2><div class="small chart-controls">${esc(state.asset)} <label>channel <select id="spectrum-channel">${options(channels, state.channel)}</select></label></div><div id="spectrum-chart"></div><div id="envelope-chart"></div>`
    : `<h2>Spectrum</h2><div class="small">${esc(state.asset)} has no vibration channel</div>`;
  document.getElementById("history-asset").onchange = e => choose(e.target.value);
  for (const b of history.querySelectorAll("button.range")) b.onclick = () => { state.range = b.dataset.range; renderControls(); loadHistory(); };
  const select = document.getElementById("spectrum-channel");
  if (select) select.onchange = e => { state.channel = e.target.value; loadSpectrum(); };
}

function show(asset) {
  state.asset = asset;
  renderControls(); loadHistory(); loadSpectrum();
}

function choose(asset) {
  state.chosen = true;
  show(asset);
}

// The first machine in alarm in the newest status is shown until the user picks one.
let alarmed = null;
document.addEventListener("status", e => {
  const found = ((e.detail || {}).assets || []).find(a => a.alarm);
  alarmed = found ? found.name : null;
  const known = state.index && state.index.assets.some(a => a.name === alarmed);
  if (known && !state.chosen && alarmed !== state.asset) show(alarmed);
});

async function start() {
  try {
    const [index, spectra] = await Promise.all(["/api/history", "/api/spectrum"].map(async u => {
      const r = await fetch(u);
      if (!r.ok) throw new Error(`${u}: ${r.status}`);
      return r.json();
    }));
    state.index = index; state.spectra = spectra;
    state.zone = {timezone: index.timezone, zone_label: index.zone_label, utc_offset_s: index.utc_offset_s};
  } catch (e) {
    return;  // a gateway without a store behind the page: the sections stay hidden
  }
  const names = state.index.assets.map(a => a.name);
  if (!names.length) return;
  show(names.includes(alarmed) ? alarmed : names[0]);
  const refreshHistory = () => { if (!document.hidden) loadHistory(); setTimeout(refreshHistory, HISTORY_REFRESH_MS[state.range]); };
  setTimeout(refreshHistory, HISTORY_REFRESH_MS[state.range]);
  setInterval(loadSpectrum, SPECTRUM_REFRESH_MS);
  let width = window.innerWidth;
  window.addEventListener("resize", () => {
    if (window.innerWidth === width) return;
    width = window.innerWidth;
    if (state.history) renderHistory(state.history);
    if (state.spectrum) renderSpectrum(state.spectrum);
    if (state.envelope) renderEnvelope(state.envelope);
  });
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
})();
