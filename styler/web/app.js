// styler's web page: a photo and a style of the gallery (presets and uploads), stylized with f_θ at
// the photo's own size; moving a slider re-renders from the server's statistics cache; then refine
// with a solver job followed over SSE. This file renders and refines, and starts the page; it runs
// after common.js (shared state and requests) and inputs.js (choosing the images).
"use strict";

const RERENDER_MS = 250; // a slider's re-render waits until it has rested this long

function imageForm() {
  const form = new FormData();
  form.append("content", state.content);
  form.append("style_id", state.styleId);
  form.append("size", $("size").value); // 0: the content's own size (capped)
  form.append("style_scale", $("style-scale").value);
  form.append("format", $("format").value);
  return form;
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
  const cache = (response.headers.get("X-Styler-Cache") || "")
    .replaceAll("=", " ")
    .replace(",", ", ");
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
  $("refine-img").removeAttribute("src"); // the solver's own start comes with the first preview
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
    if (events.readyState === EventSource.CLOSED) {
      finish({ status: "failed", error: "Lost the connection to the server." });
    }
  };
}

function showProgress(job) {
  const bar = $("refine-progress");
  bar.max = Math.max(job.total, 1);
  bar.value = job.step;
  const hasLoss = job.terms && job.terms.total !== undefined;
  const loss = hasLoss ? ` · loss ${job.terms.total.toFixed(3)}` : "";
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
    const iters = $("iters");
    if (!state.defaults) {  // once: then they are the user's
      $("format").value = info.default_format;
      iters.value = info.solver.refine_iters;
    }
    state.defaults = true;
    state.limits = info.limits;
    iters.max = info.limits.max_iters;
    iters.value = Math.min(Number(iters.value), info.limits.max_iters);
    for (const option of $("size").options) {
      option.disabled = Number(option.value) > info.limits.max_size;
    }
    const trained = info.model.trained ? `${info.model.trained.steps} training steps` : "untrained";
    const file = info.model.file || "preloaded";
    $("model-info").textContent = `Model: ${file} (${trained}) on ${info.device}`;
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
