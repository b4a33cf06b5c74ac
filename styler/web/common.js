// What the page's scripts share: the page state, element lookup, messages and requests to the
// server. Loaded first; inputs.js and app.js use these.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  content: null, styleId: null, limits: {}, resultUrl: null, job: null, events: null,
  rendering: false, again: false, timer: null, defaults: false,
};

const mb = (bytes) =>
  bytes < 2 ** 20 ? `${Math.ceil(bytes / 1024)} kB` : `${(bytes / 2 ** 20).toFixed(1)} MB`;

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

function updateButtons(busy = false) {
  const ready = Boolean(state.content && state.styleId);
  $("stylize-btn").disabled = busy || !ready;
  $("refine-btn").disabled = busy || !ready || Boolean(state.job);
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
