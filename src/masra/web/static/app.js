// The masra page: choose a video, run a query as a job, poll its progress, draw the moments.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const STAGES = { queued: "Waiting for earlier queries", start: "Starting", decode: "Decoding frames",
                 encode: "Encoding clips", ground: "Finding moments" };
const DONE = { decode: ["frame", "decoded"], encode: ["clip", "encoded"], ground: ["window", "grounded"] };
const state = { video: null, library: [], result: null, selected: -1 };

function fmt(seconds) {
  const m = Math.floor(seconds / 60);
  const s = seconds - 60 * m;
  return `${m}:${s.toFixed(1).padStart(4, "0")}`;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

function showStatus(text, done, total) {
  $("status").hidden = false;
  $("progress").hidden = false;
  $("status-text").textContent = text;
  const bar = $("progress");
  if (total > 0) { bar.max = total; bar.value = done; } else { bar.removeAttribute("value"); }
}

function hideStatus() { $("status").hidden = true; }

// A finished job leaves one line: what it did and how long it took.
function showSummary(job) {
  const parts = job.stages.map((s) => {
    const [noun, verb] = DONE[s.stage] || [s.stage, "done"];
    return `${s.total} ${noun}${s.total === 1 ? "" : "s"} ${verb} (${s.seconds.toFixed(1)} s)`;
  });
  $("status").hidden = false;
  $("progress").hidden = true;
  $("status-text").textContent = `Done in ${job.elapsed_s.toFixed(1)} s: ${parts.join(", ") || "nothing to do"}`;
}

async function getJSON(url, options) {
  const response = await fetch(url, options);
  let data = {};
  try { data = await response.json(); } catch (_) { data = { error: `the server answered ${response.status}` }; }
  return { ok: response.ok, data };
}

function setVideo(video) {
  state.video = video;
  state.result = null;
  $("results").hidden = true;
  const player = $("player");
  if (video) { player.src = video.url; } else { player.removeAttribute("src"); player.load(); }
  $("video-name").textContent = video ? `${video.name} (${fmt(video.duration)})` : "";
}

async function loadInfo() {
  const { ok, data } = await getJSON("/api/info");
  if (!ok) { showError(data.error); return; }
  const l = data.limits;
  $("model").textContent = `model: ${data.title}`;
  $("limits").textContent = `Videos up to ${l.max_duration} s, uploads up to ${(l.max_upload_bytes / 2 ** 20).toFixed(0)} MB, ` +
    `queries up to ${l.max_query_chars} characters.`;
  state.library = data.videos;
  const select = $("library");
  for (const v of data.videos) {
    const option = document.createElement("option");
    option.value = v.ref;
    option.textContent = v.problem ? `${v.name} (cannot be used)` : `${v.name} (${fmt(v.duration)})`;
    select.appendChild(option);
  }
  $("library-label").hidden = data.videos.length === 0;
}

function pickLibrary() {
  clearError();
  $("upload").value = "";
  const entry = state.library.find((v) => v.ref === $("library").value);
  if (entry && entry.problem) { showError(entry.problem); setVideo(null); return; }
  setVideo(entry || null);
}

function upload() {
  clearError();
  $("library").value = "";
  const file = $("upload").files[0];
  if (!file) return;
  setVideo(null);
  const xhr = new XMLHttpRequest();
  xhr.open("POST", `/api/uploads?name=${encodeURIComponent(file.name)}`);
  xhr.upload.onprogress = (e) => showStatus(`Uploading ${file.name}`, e.loaded, e.lengthComputable ? e.total : 0);
  xhr.onload = () => {
    hideStatus();
    let data;
    try { data = JSON.parse(xhr.responseText); } catch (_) { data = { error: `the server answered ${xhr.status}` }; }
    if (xhr.status === 200) setVideo(data); else showError(data.error);
  };
  xhr.onerror = () => { hideStatus(); showError("the upload failed: the server could not be reached"); };
  showStatus(`Uploading ${file.name}`, 0, file.size);
  xhr.send(file);
}

async function runQuery(event) {
  event.preventDefault();
  clearError();
  $("run").disabled = true;
  try {
    const body = JSON.stringify({ video: state.video ? state.video.ref : "", query: $("query").value });
    const { ok, data } = await getJSON("/api/jobs", { method: "POST", headers: { "Content-Type": "application/json" }, body });
    if (!ok) { showError(data.error); return; }
    const result = await poll(data.job);
    if (result) render(result);
  } finally {
    $("run").disabled = false;
  }
}

async function poll(jobId) {
  for (;;) {
    const { ok, data } = await getJSON(`/api/jobs/${jobId}`);
    if (!ok) { hideStatus(); showError(data.error); return null; }
    if (data.state === "done") { showSummary(data); return data.result; }
    if (data.state === "failed") { hideStatus(); showError(data.error); return null; }
    let text = STAGES[data.stage] || data.stage;
    if (data.total > 0) text += ` ${data.done}/${data.total}`;
    if (data.eta_s !== null) text += `, about ${Math.ceil(data.eta_s)} s left`;
    showStatus(text, data.done, data.total);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

function el(name, attrs, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}

const W = 800, CURVE_TOP = 8, CURVE_BOTTOM = 92, LANES_TOP = 104, LANES_BOTTOM = 152;

function drawChart(result) {
  const svg = $("chart");
  svg.replaceChildren();
  const x = (t) => (Math.min(Math.max(t, 0), result.duration) / result.duration) * W;
  const values = result.saliency;
  const lo = Math.min(...values), hi = Math.max(...values);
  const y = (v) => CURVE_BOTTOM - (hi > lo ? (v - lo) / (hi - lo) : 0.5) * (CURVE_BOTTOM - CURVE_TOP);
  const points = values.map((v, i) => `${x(result.saliency_times[i]).toFixed(1)},${y(v).toFixed(1)}`);
  if (state.selected >= 0) {
    const m = result.moments[state.selected];
    el("rect", { class: "band", x: x(m.start), y: 0, width: Math.max(1, x(m.end) - x(m.start)), height: LANES_BOTTOM }, svg);
  }
  el("polygon", { class: "area", points: `${x(result.saliency_times[0])},${CURVE_BOTTOM} ${points.join(" ")} ` +
    `${x(result.saliency_times[values.length - 1])},${CURVE_BOTTOM}` }, svg);
  el("polyline", { class: "curve", points: points.join(" ") }, svg);
  el("line", { class: "axis", x1: 0, x2: W, y1: CURVE_BOTTOM, y2: CURVE_BOTTOM }, svg);
  el("text", { x: 4, y: 18 }, svg).textContent = "saliency";
  const lane = (LANES_BOTTOM - LANES_TOP) / Math.max(1, result.moments.length);
  result.moments.forEach((m, i) => {
    const rect = el("rect", { class: "moment" + (i === state.selected ? " selected" : ""), x: x(m.start),
      y: LANES_TOP + i * lane, width: Math.max(2, x(m.end) - x(m.start)), height: Math.max(2, lane - 1),
      "data-rank": i + 1, opacity: (1 - 0.6 * i / Math.max(1, result.moments.length)).toFixed(2) }, svg);
    el("title", {}, rect).textContent = `#${i + 1} ${fmt(m.start)}–${fmt(m.end)} (score ${m.score.toFixed(3)})`;
    rect.addEventListener("click", () => play(i));
  });
  for (let k = 0; k <= 4; k++) {
    const t = (k / 4) * result.duration;
    el("text", { x: Math.min(x(t) + 2, W - 40), y: 166 }, svg).textContent = fmt(t);
  }
  el("line", { class: "playhead", id: "playhead", x1: 0, x2: 0, y1: 0, y2: LANES_BOTTOM }, svg);
  movePlayhead();
}

function render(result) {
  state.result = result;
  state.selected = -1;
  $("results").hidden = false;
  $("result-query").textContent = `for “${result.query}”`;
  const list = $("moments");
  list.replaceChildren();
  result.moments.forEach((m, i) => {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.className = "moment";
    button.dataset.start = m.start;
    button.textContent = `${fmt(m.start)} – ${fmt(m.end)}   score ${m.score.toFixed(3)}`;
    button.addEventListener("click", () => play(i));
    item.appendChild(button);
    list.appendChild(item);
  });
  drawChart(result);
}

function play(index) {
  const moment = state.result.moments[index];
  state.selected = index;
  document.querySelectorAll("#moments button").forEach((b, i) => b.classList.toggle("selected", i === index));
  drawChart(state.result);
  const player = $("player");
  player.currentTime = moment.start;
  player.play().catch(() => {});  // a browser may refuse autoplay; the video still sits at the moment's start
}

function movePlayhead() {
  const line = $("playhead");
  if (!line || !state.result) return;
  const t = Math.min($("player").currentTime, state.result.duration);
  const px = (t / state.result.duration) * W;
  line.setAttribute("x1", px);
  line.setAttribute("x2", px);
}

$("upload").addEventListener("change", upload);
$("library").addEventListener("change", pickLibrary);
$("query-form").addEventListener("submit", runQuery);
$("player").addEventListener("timeupdate", movePlayhead);
$("player").addEventListener("error", () => {
  if (state.video) showError(`this browser cannot play ${state.video.name}; the moments are still found (mp4/H.264 and WebM play everywhere)`);
});
loadInfo();
