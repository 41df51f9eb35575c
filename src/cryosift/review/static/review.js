// cryosift review: gallery, keyboard grading, detail view and fine-tuning. No external code.
"use strict";

const state = { steps: [], step: null, data: null, order: [], selected: 0, sort: "score", ascending: true, timer: null };
const GRADE_KEYS = { a: "A", b: "B", c: "C", d: "D", e: "F", f: "F", "1": "1", "2": "2", "3": "3", "4": "4", "5": "5" };
// Natural first direction of each sort key: best score and resolution first, largest classes first.
const DEFAULT_ASCENDING = { score: true, resolution_A: true, class: true, grade: true, distribution: false, mass_kDa: false, particles: false };
const GRADE_ORDER = { A: 1, B: 2, C: 3, D: 4, F: 5 };

const $ = (id) => document.getElementById(id);

function showMessage(text, ok) {
  const box = $("message");
  box.textContent = text;
  box.className = ok ? "ok" : "";
  box.hidden = !text;
}

async function api(url, options) {
  const response = await fetch(url, options);
  const body = await response.json().catch(() => ({ error: `${url}: HTTP ${response.status}` }));
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

function fmt(value, digits) {
  if (value === null || value === undefined) return "–";
  if (typeof value !== "number") return String(value);
  if (Number.isInteger(value)) return value.toLocaleString("en");
  return value.toFixed(digits === undefined ? 3 : digits);
}

function gradeNumber(g) {
  if (g === null || g === undefined) return Infinity;
  return GRADE_ORDER[g] || Number(g);
}

// ---- steps -------------------------------------------------------------------------------
async function loadSteps() {
  const info = await api("/api/steps");
  state.steps = info.steps;
  $("grades-file").textContent = `grades: ${info.grades}`;
  const nav = $("steps");
  nav.innerHTML = "";
  let dataset = null;
  for (const s of info.steps) {
    if (s.dataset !== dataset) {
      dataset = s.dataset;
      const h = document.createElement("h3");
      h.textContent = s.key.includes(":") ? s.key.split("/")[0] : s.dataset;
      nav.appendChild(h);
    }
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = s.step;
    b.dataset.step = s.key;
    b.title = s.scores;
    b.addEventListener("click", () => openStep(s.key));
    nav.appendChild(b);
  }
  showFinetune(info.finetune);
  const wanted = decodeURIComponent(location.hash.slice(1));
  const first = info.steps.find((s) => s.key === wanted) || info.steps.find((s) => s.step === "final") || info.steps[0];
  if (first) await openStep(first.key);
}

async function openStep(key) {
  state.step = key;
  history.replaceState(null, "", "#" + encodeURIComponent(key));
  for (const b of document.querySelectorAll("nav button")) b.classList.toggle("active", b.dataset.step === key);
  try {
    state.data = await api(`/api/classes?step=${encodeURIComponent(key)}`);
    showMessage("");
  } catch (err) {
    state.data = null;
    $("gallery").innerHTML = "";
    $("summary").textContent = "";
    showMessage(err.message);
    return;
  }
  state.selected = 0;
  renderLegend();
  renderGallery();
}

// ---- gallery -----------------------------------------------------------------------------
function bandColour(band) {
  return state.data.bands[band].colour;
}

function renderLegend() {
  const d = state.data;
  const parts = d.bands.map((b, i) => {
    const label = b.upto === null ? `> ${d.cutoffs[d.cutoffs.length - 1]}` : (i === 0 ? `≤ ${b.upto}` : `≤ ${b.upto}`);
    return `<span class="band" style="background:${b.colour}">${label}</span>`;
  });
  $("legend").innerHTML = parts.join("");
  const kept = d.cutoffs.map((c) => `≤ ${c}: ${fmt(d.kept_total[String(c)])}`).join(" · ");
  const graded = d.classes.filter((c) => c.grade !== null).length;
  $("summary").textContent = `${d.dataset} / ${d.name}: ${d.classes.length} classes, ${graded} graded · particles kept ${kept}`;
}

function sortedClasses() {
  const key = state.sort;
  const sign = state.ascending ? 1 : -1;
  const value = (c) => (key === "grade" ? gradeNumber(c.grade) : c[key]);
  return state.data.classes.slice().sort((a, b) => {
    const va = value(a), vb = value(b);
    const na = va === null || va === undefined || Number.isNaN(va), nb = vb === null || vb === undefined || Number.isNaN(vb);
    if (na !== nb) return na ? 1 : -1;  // classes without the value last, either way
    if (!na && va !== vb) return sign * (va < vb ? -1 : 1);
    return a.class - b.class;
  });
}

// The value the gallery is sorted by, under each class (beside its score).
function sortValue(c) {
  switch (state.sort) {
    case "distribution": return c.distribution === null ? "" : `${(100 * c.distribution).toFixed(1)} %`;
    case "resolution_A": return c.resolution_A === null ? "" : `${fmt(c.resolution_A, 1)} Å`;
    case "mass_kDa": return c.mass_kDa === null ? "" : `${fmt(c.mass_kDa, 0)} kDa`;
    case "particles": return c.particles === null ? "" : `${fmt(c.particles)} ptcl`;
    default: return "";
  }
}

function renderGallery() {
  const g = $("gallery");
  g.innerHTML = "";
  if (!state.data) return;
  state.order = sortedClasses();
  state.order.forEach((c, i) => {
    const tile = document.createElement("div");
    tile.className = "tile";
    tile.dataset.class = c.class;
    tile.dataset.index = i;
    tile.innerHTML = `<img loading="lazy" alt="class ${c.class}" src="${c.image}">` +
      `<div class="band-bar" style="background:${bandColour(c.band)}"></div>` +
      `<div class="caption"><span>#${c.class}</span><span class="key">${sortValue(c)}</span>` +
      `<span class="score" style="color:${bandColour(c.band)}">${c.score.toFixed(2)}</span></div>` +
      `<span class="grade">${c.grade || ""}</span>` + (c.round_status ? `<span class="status">${c.round_status}</span>` : "");
    tile.title = `class ${c.class}: score ${c.score.toFixed(3)}, ${fmt(c.particles)} particles, ${fmt(c.resolution_A, 1)} Å, ${fmt(c.mass_kDa, 0)} kDa`;
    tile.addEventListener("click", () => { select(i); g.focus(); });
    tile.addEventListener("dblclick", () => openDetail());
    g.appendChild(tile);
  });
  select(Math.min(state.selected, state.order.length - 1));
  g.focus();
}

function select(i) {
  const tiles = $("gallery").children;
  if (!tiles.length) return;
  i = Math.max(0, Math.min(tiles.length - 1, i));
  tiles[state.selected] && tiles[state.selected].classList.remove("selected");
  state.selected = i;
  tiles[i].classList.add("selected");
  tiles[i].scrollIntoView({ block: "nearest" });
  if (!$("detail").hidden) openDetail();
}

function columns() {
  const tiles = $("gallery").children;
  if (tiles.length < 2) return 1;
  const top = tiles[0].offsetTop;
  let n = 0;
  while (n < tiles.length && tiles[n].offsetTop === top) n++;
  return n;
}

// ---- grades ------------------------------------------------------------------------------
// The class is taken and the selection moves on at the key press, so fast typing grades
// consecutive classes; the badge shows the grade the server stored (or the old one on error).
async function setGrade(grade) {
  const index = state.selected;
  const c = state.order[index];
  if (!c) return;
  const step = state.step;
  if (grade !== null) select(index + 1);
  try {
    const r = await api("/api/grade", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ step: step, class: c.class, grade: grade }),
    });
    if (state.step !== step) return;
    c.grade = r.grade;
    const tile = $("gallery").children[index];
    if (tile) tile.querySelector(".grade").textContent = r.grade || "";
    renderLegend();
    showMessage("");
    if (!$("detail").hidden) openDetail();
  } catch (err) {
    showMessage(err.message);
  }
}

// Another tab may have graded meanwhile: take the file's grades when this one comes back.
async function refreshGrades() {
  if (!state.step || !state.data) return;
  try {
    const fresh = await api(`/api/classes?step=${encodeURIComponent(state.step)}`);
    const byClass = new Map(fresh.classes.map((c) => [c.class, c.grade]));
    state.data.classes.forEach((c) => { c.grade = byClass.get(c.class) ?? null; });
    state.order.forEach((c, i) => { $("gallery").children[i].querySelector(".grade").textContent = c.grade || ""; });
    renderLegend();
  } catch (err) { /* shown on the next action */ }
}

// ---- detail ------------------------------------------------------------------------------
function openDetail() {
  const c = state.order[state.selected];
  if (!c) return;
  const d = state.data;
  $("detail-title").textContent = `${d.dataset} / ${d.name} · class ${c.class}`;
  $("detail-image").src = c.image;
  const rows = Object.entries(d.feature_labels).filter(([k]) => k in c.features)
    .map(([k, label]) => `<tr><td>${label}</td><td>${fmt(c.features[k])}</td></tr>`);
  for (const [k, v] of Object.entries(c.features)) if (!(k in d.feature_labels)) rows.push(`<tr><td>${k}</td><td>${fmt(v)}</td></tr>`);
  if (c.round_status) rows.push(`<tr><td>this round</td><td>${c.round_status}</td></tr>`);
  $("detail-features").innerHTML = rows.join("");
  $("detail-kept").innerHTML = "<tr><th>cutoff</th><th>particles kept</th><th>of</th></tr>" +
    d.cutoffs.map((cut) => `<tr><td>score ≤ ${cut}</td><td>${fmt(c.kept[String(cut)])}</td><td>${fmt(c.particles)}</td></tr>`).join("");
  $("detail-kept-source").textContent = d.kept_source === "scores"
    ? "from the scores (no final selection for this step)" : `from ${d.kept_source}`;
  $("detail-grades").innerHTML = ["A", "B", "C", "D", "F"].map((g) =>
    `<button type="button" data-grade="${g}" class="${c.grade === g ? "on" : ""}">${g}</button>`).join("") +
    `<button type="button" data-grade="">clear</button>`;
  for (const b of $("detail-grades").querySelectorAll("button")) {
    b.addEventListener("click", () => setGrade(b.dataset.grade || null));
  }
  $("detail").hidden = false;
}

function closeDetail() {
  $("detail").hidden = true;
  $("gallery").focus();
}

// ---- fine-tuning -------------------------------------------------------------------------
function showFinetune(s) {
  const running = s.phase === "training" || s.phase === "rescoring";
  $("finetune-start").disabled = running;
  $("finetune-progress").hidden = s.phase === "none";
  $("finetune-progress").value = s.progress || 0;
  const what = { none: "No fine-tuning yet.", training: "Training…", rescoring: "Rescoring the graded classes…",
                 done: "Done.", failed: "Failed:", interrupted: "Interrupted:" }[s.phase] || s.phase;
  $("finetune-message").textContent = `${s.run ? s.run + ": " : ""}${what} ${s.phase === "done" ? "" : (s.message || "")}`;
  $("finetune-message").dataset.phase = s.phase;
  const res = $("finetune-result");
  if (s.phase === "done" && s.result) {
    const rows = s.result.classes.map((r) =>
      `<tr><td title="${r.dataset} / ${r.step}">${r.step} #${r.class}</td><td>${r.grade}</td><td>${fmt(r.before, 2)}</td><td>${fmt(r.after, 2)}</td></tr>`);
    res.innerHTML = `<p class="small">model: ${s.model}</p>` +
      `<p>mean |score − grade|: ${fmt(s.result.mean_abs_diff_before, 2)} before, ${fmt(s.result.mean_abs_diff_after, 2)} after</p>` +
      `<table id="finetune-table"><tr><th>class</th><th>grade</th><th>before</th><th>after</th></tr>${rows.join("")}</table>`;
  } else {
    res.innerHTML = "";
  }
  clearTimeout(state.timer);
  if (running) state.timer = setTimeout(pollFinetune, 1000);
}

async function pollFinetune() {
  try { showFinetune(await api("/api/finetune")); } catch (err) { showMessage(err.message); }
}

async function startFinetune() {
  try {
    showFinetune(await api("/api/finetune", { method: "POST" }));
  } catch (err) {
    showMessage(err.message);
  }
}

// ---- keys --------------------------------------------------------------------------------
function onKey(ev) {
  if (ev.target.tagName === "SELECT" || ev.target.tagName === "INPUT" || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const detailOpen = !$("detail").hidden;
  const key = ev.key;
  if (key === "Escape" && detailOpen) { closeDetail(); ev.preventDefault(); return; }
  if (!state.data) return;
  const lower = key.toLowerCase();
  if (lower in GRADE_KEYS) { setGrade(GRADE_KEYS[lower]); ev.preventDefault(); return; }
  const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: columns(), ArrowUp: -columns() };
  if (key in moves) { select(state.selected + moves[key]); ev.preventDefault(); return; }
  if (key === "Backspace" || key === "Delete" || key === "0") { setGrade(null); ev.preventDefault(); return; }
  if (key === "Enter" || key === " ") { detailOpen ? closeDetail() : openDetail(); ev.preventDefault(); }
}

function setSort(key) {
  state.sort = key;
  state.ascending = DEFAULT_ASCENDING[key];
  $("order").textContent = state.ascending ? "ascending" : "descending";
  state.selected = 0;
  renderGallery();
}

document.addEventListener("DOMContentLoaded", () => {
  $("sort").addEventListener("change", (ev) => setSort(ev.target.value));
  $("order").addEventListener("click", () => {
    state.ascending = !state.ascending;
    $("order").textContent = state.ascending ? "ascending" : "descending";
    renderGallery();
  });
  $("finetune-start").addEventListener("click", startFinetune);
  $("detail-close").addEventListener("click", closeDetail);
  $("detail").addEventListener("click", (ev) => { if (ev.target.id === "detail") closeDetail(); });
  document.addEventListener("keydown", onKey);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refreshGrades(); });
  window.addEventListener("focus", refreshGrades);
  loadSteps().catch((err) => showMessage(err.message));
});
