// styler's web page: a photo and a style of the gallery (presets and uploads), stylized with f_θ at
// the photo's own size; moving a slider re-renders from the server's statistics cache; then refine
// with a solver job followed over SSE.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  content: null, styleId: null, limits: {}, resultUrl: null, job: null, events: null,
  rendering: false, again: false, timer: null, defaults: false,
};
const RERENDER_MS = 250; // a slider's re-render waits until it has rested this long

const mb = (bytes) => (bytes < 2 ** 20 ? `${Math.ceil(bytes / 1024)} kB` : `${(bytes / 2 ** 20).toFixed(1)} MB`);

function showMessage(text, kind = "error") {
  const box = $("message");
  box.textContent = text;
  box.className = `message ${kind}`;
  box.hidden = !text;
}

// The API answers every error as {"error": {"code", "message"}}; show its message.
async function errorText(response) {
  try {
    const body = await response.json();
    return body.error.message;
  } catch {
    return `The server answered ${response.status} ${response.statusText}.`;
  }
}

// fetch, or null (with the reason shown) when the server cannot be reached.
async function send(url, options) {
  try {
    return await fetch(url, options);
  } catch (e) {
    showMessage(`Could not reach the server (${e.message}).`);
    return null;
  }
}

// ---- choosing images ----

function setupDrop(role) {
  const drop = $(`${role}-drop`);
  const input = $(`${role}-input`);
  drop.addEventListener("click", () => input.click());
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      input.click();
    }
  });
  const chosen = role === "content" ? pickContent : uploadStyle;
  input.addEventListener("change", () => input.files[0] && chosen(input.files[0]));
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (e) => {
      e.preventDefault();
      drop.classList.add("over");
    });
  }
  for (const type of ["dragleave", "drop"]) {
    drop.addEventListener(type, (e) => {
      e.preventDefault();
      drop.classList.remove("over");
    });
  }
  drop.addEventListener("drop", (e) => e.dataTransfer.files[0] && chosen(e.dataTransfer.files[0]));
}

function tooBig(file) {
  const limit = state.limits.max_upload_bytes;
  if (limit && file.size > limit) {
    showMessage(`${file.name} is ${mb(file.size)}, over the upload limit of ${mb(limit)}.`);
    return true;
  }
  return false;
}

function pickContent(file) {
  showMessage("");
  if (tooBig(file)) return;
  state.content = file;
  const img = $("content-preview");
  const drop = $("content-drop");
  if (img.src) URL.revokeObjectURL(img.src);
  img.onerror = () => {
    // Not something the browser can show (the server will say why, if it cannot read it either).
    img.hidden = true;
    drop.classList.remove("filled");
  };
  img.src = URL.createObjectURL(file);
  img.hidden = false;
  $("content-name").textContent = `${file.name} · ${mb(file.size)}`;
  drop.classList.add("filled");
  updateButtons();
  if (state.styleId) stylize();
}

// ---- the style gallery: presets and uploads, each a button; the chosen one is pressed ----

async function loadGallery(select = null) {
  let styles;
  try {
    styles = (await (await fetch("/v1/styles")).json()).styles;
  } catch (e) {
    showMessage(`Could not load the style gallery (${e.message}).`);
    return;
  }
  const gallery = $("gallery");
  for (const old of gallery.querySelectorAll(".swatch")) old.remove();
  for (const style of styles) {
    const button = document.createElement("button");
    const who = style.artist ? ` — ${style.artist}${style.year ? `, ${style.year}` : ""}` : "";
    button.type = "button";
    button.className = "swatch";
    button.dataset.id = style.id;
    if (style.preset) button.dataset.preset = "";
    button.title = `${style.name}${who}`;
    button.setAttribute("aria-pressed", "false");
    const img = document.createElement("img");
    img.src = style.thumbnail_url;
    img.alt = `${style.name}${who}`;
    img.loading = "lazy";
    button.append(img);
    button.addEventListener("click", () => chooseStyle(style.id));
    gallery.append(button);
  }
  if (select || state.styleId) chooseStyle(select || state.styleId, Boolean(select));
}

function chooseStyle(id, render = true) {
  const button = document.querySelector(`.swatch[data-id="${CSS.escape(id)}"]`);
  if (!button) return;
  state.styleId = id;
  for (const b of document.querySelectorAll(".swatch")) b.setAttribute("aria-pressed", String(b === button));
  const preview = $("style-preview");
  preview.src = button.querySelector("img").src;
  preview.hidden = false;
  $("style-name").textContent = button.title;
  $("remove-style-btn").hidden = "preset" in button.dataset;
  updateButtons();
  if (render && state.content) stylize();
}

// Only uploads can be removed (presets are read-only); a job already given it keeps its copy.
// One already gone (removed in another tab, or expired) leaves the page too, with the message.
async function removeStyle() {
  const id = state.styleId;
  if (!id || !confirm(`Remove "${$("style-name").textContent}" from the gallery?`)) return;
  const response = await send(`/v1/styles/${encodeURIComponent(id)}`, { method: "DELETE" });
  if (!response) return;
  if (!response.ok) {
    showMessage(await errorText(response));
    if (response.status !== 404) return;
  }
  state.styleId = null;
  $("style-preview").hidden = true;
  $("remove-style-btn").hidden = true;
  $("style-name").textContent = "pick a painting, or upload one";
  updateButtons();
  await loadGallery();
}

// An uploaded style joins the gallery (its statistics are computed once, on the server).
async function uploadStyle(file) {
  showMessage("");
  if (tooBig(file)) return;
  const form = new FormData();
  form.append("style", file);
  $("style-name").textContent = `uploading ${file.name}…`;
  const response = await send("/v1/styles", { method: "POST", body: form });
  if (!response) return;
  if (!response.ok) {
    $("style-name").textContent = "pick a painting, or upload one";
    showMessage(await errorText(response));
    return;
  }
  await loadGallery((await response.json()).id);
}

function updateButtons(busy = false) {
  const ready = Boolean(state.content && state.styleId);
  $("stylize-btn").disabled = busy || !ready;
  $("refine-btn").disabled = busy || !ready || Boolean(state.job);
}

function imageForm() {
  const form = new FormData();
  form.append("content", state.content);
  form.append("style_id", state.styleId);
  form.append("size", $("size").value); // 0: the content's own size (capped)
  form.append("style_scale", $("style-scale").value);
  form.append("format", $("format").value);
  return form;
}

// POST a form with the buttons disabled; an error answer shows its message and gives null.
async function submit(url, form) {
  updateButtons(true);
  const response = await send(url, { method: "POST", body: form });
  updateButtons();
  if (!response) return null;
  if (!response.ok) {
    showMessage(await errorText(response));
    return null;
  }
  showMessage("");
  return response;
}

// ---- the fast path ----

// One render at a time: a request asked for meanwhile runs once the current one is done.
async function stylize() {
  if (state.rendering) {
    state.again = true;
    return;
  }
  state.rendering = true;
  const form = imageForm();
  form.append("alpha", $("alpha").value);
  form.append("preserve_color", $("preserve-color").checked);
  $("stylize-btn").textContent = "Stylizing…";
  const t0 = performance.now();
  const response = await submit("/v1/stylize", form);
  $("stylize-btn").textContent = "Stylize";
  if (response) await show(response, Math.round(performance.now() - t0));
  state.rendering = false;
  if (state.again) {
    state.again = false;
    stylize();
  }
}

async function show(response, roundTrip) {
  const blob = await response.blob();
  if (state.resultUrl) URL.revokeObjectURL(state.resultUrl);
  state.resultUrl = URL.createObjectURL(blob);
  const [w, h] = (response.headers.get("X-Image-Size") || "?x?").split("x");
  const scaled = response.headers.get("X-Styler-Scaled");
  const cache = (response.headers.get("X-Styler-Cache") || "").replaceAll("=", " ").replace(",", ", ");
  const notes = [
    `${w}×${h}`,
    `${response.headers.get("X-Elapsed-Ms")} ms on the server (${roundTrip} ms in all)`,
    cache && `cache: ${cache}`,
    scaled && `scaled down from ${scaled.split("->")[0].replace("x", "×")} by the server's limit`,
  ];
  $("result-img").src = state.resultUrl;
  $("result-info").textContent = notes.filter(Boolean).join(" · ");
  const download = $("download-btn");
  download.href = state.resultUrl;
  download.download = `stylized.${$("format").value}`;
  $("results").hidden = false;
}

// Sliders and options re-render once a result is shown, after they rest for RERENDER_MS.
function rerenderSoon() {
  if ($("results").hidden || !state.content || !state.styleId) return;
  clearTimeout(state.timer);
  state.timer = setTimeout(stylize, RERENDER_MS);
}

// ---- the solver, as a job ----

async function refine() {
  const form = imageForm();
  form.append("init", "fast");
  form.append("iters", $("iters").value);
  const response = await submit("/v1/jobs", form);
  if (!response) return;
  const job = await response.json();
  state.job = job.id;
  updateButtons();
  $("refine-card").hidden = false;
  $("refine-img").src = state.resultUrl || "";
  $("refine-download").hidden = true;
  $("cancel-btn").hidden = false;
  $("cancel-btn").disabled = false;
  showProgress(job);
  const events = new EventSource(job.events_url);
  state.events = events;
  events.addEventListener("progress", (e) => {
    const update = JSON.parse(e.data);
    showProgress(update);
    if (update.preview) $("refine-img").src = update.preview;
  });
  events.addEventListener("end", (e) => {
    events.close();
    finish(JSON.parse(e.data));
  });
  events.onerror = () => {
    if (events.readyState === EventSource.CLOSED) finish({ status: "failed", error: "Lost the connection to the server." });
  };
}

function showProgress(job) {
  const bar = $("refine-progress");
  bar.max = Math.max(job.total, 1);
  bar.value = job.step;
  const loss = job.terms && job.terms.total !== undefined ? ` · loss ${job.terms.total.toFixed(3)}` : "";
  const time = job.elapsed_s ? ` · ${job.elapsed_s.toFixed(1)} s` : "";
  $("refine-status").textContent = `${job.status} · step ${job.step} of ${job.total}${loss}${time}`;
}

function finish(job) {
  state.job = null;
  state.events = null;
  $("cancel-btn").hidden = true;
  updateButtons();
  if (job.status === "done") {
    showProgress(job);
    $("refine-img").src = job.result_url;
    const download = $("refine-download");
    download.href = job.result_url;
    download.download = `refined.${job.params.format}`;
    download.hidden = false;
  } else if (job.status === "cancelled") {
    $("refine-status").textContent = `cancelled at step ${job.step} of ${job.total}`;
  } else {
    $("refine-status").textContent = "failed";
    showMessage(job.error || "The job failed.");
  }
}

async function cancel() {
  if (!state.job) return;
  $("cancel-btn").disabled = true;
  $("refine-status").textContent = "cancelling…";
  await send(`/v1/jobs/${state.job}`, { method: "DELETE" }); // the "end" event reports the outcome
}

// ---- start-up: limits, model readiness ----

async function checkServer() {
  const badge = $("status-badge");
  try {
    const info = await (await fetch("/v1/info")).json();
    if (!state.defaults) $("format").value = info.default_format; // once: then it is the user's
    state.defaults = true;
    state.limits = info.limits;
    const iters = $("iters");
    iters.max = info.limits.max_iters;
    iters.value = Math.min(Number(iters.value), info.limits.max_iters);
    for (const option of $("size").options) option.disabled = Number(option.value) > info.limits.max_size;
    const trained = info.model.trained ? `${info.model.trained.steps} training steps` : "untrained";
    $("model-info").textContent = `Model: ${info.model.file || "preloaded"} (${trained}) on ${info.device}`;
    if (info.ready) {
      badge.textContent = "ready";
      badge.className = "badge ok";
      return;
    }
    badge.textContent = info.model.error ? "model unavailable" : "loading the model…";
    badge.className = "badge wait";
    if (info.model.error) {
      showMessage(info.model.error);
      return;
    }
  } catch {
    badge.textContent = "server unreachable";
    badge.className = "badge bad";
  }
  setTimeout(checkServer, 2000);
}

$("alpha").addEventListener("input", () => {
  $("alpha-value").textContent = Number($("alpha").value).toFixed(2);
  rerenderSoon();
});
$("style-scale").addEventListener("input", () => {
  $("style-scale-value").textContent = `${Number($("style-scale").value).toFixed(2)}×`;
  rerenderSoon();
});
$("preserve-color").addEventListener("change", rerenderSoon);
$("stylize-btn").addEventListener("click", stylize);
$("refine-btn").addEventListener("click", refine);
$("cancel-btn").addEventListener("click", cancel);
$("remove-style-btn").addEventListener("click", removeStyle);
setupDrop("content");
setupDrop("style");
checkServer();
loadGallery();
