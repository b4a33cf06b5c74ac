// Choosing the images: the content photo (drop or file picker) and a style of the gallery
// (presets and uploads). Uses common.js; a choice that completes the pair calls stylize (app.js).
"use strict";

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
  const dropped = (e) => e.dataTransfer.files[0] && chosen(e.dataTransfer.files[0]);
  drop.addEventListener("drop", dropped);
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
  for (const b of document.querySelectorAll(".swatch")) {
    b.setAttribute("aria-pressed", String(b === button));
  }
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
