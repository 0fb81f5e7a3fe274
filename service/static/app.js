// The playground: everything it shows comes from GET /info and the public API.
"use strict";

const $ = (id) => document.getElementById(id);
let info = null;
let generation = null; // AbortController of the /generate request in flight
let debounce = null;
let encoded = null; // the last /encode answer
let model = null; // the served model the page uses (GET /models), null: the service's default

// With API_KEY set, the service answers 401 to the API's routes: the page asks for the key once and keeps it in
// sessionStorage, so it lives as long as this tab and is never written to disk or sent to another origin.
const KEY_STORAGE = "infogan-api-key";
let keyPrompt = null; // the pending question, shared by every request that met a 401

function askForKey() {
  keyPrompt = keyPrompt || new Promise((resolve) => {
    const form = $("key-form");
    const done = (key) => { form.hidden = true; keyPrompt = null; resolve(key); };
    form.onsubmit = (event) => { event.preventDefault(); done($("api-key").value.trim() || null); };
    $("key-cancel").onclick = () => done(null);
    form.hidden = false;
    $("api-key").focus();
  });
  return keyPrompt;
}

// Every call to the API: for the chosen model, with the tab's key when it has one; a 401 asks for the key and
// sends the request again.
async function api(path, options = {}) {
  if (model !== null) path += `${path.includes("?") ? "&" : "?"}model=${encodeURIComponent(model)}`;
  for (;;) {
    const key = sessionStorage.getItem(KEY_STORAGE);
    const headers = { ...options.headers, ...(key ? { Authorization: `Bearer ${key}` } : {}) };
    const response = await fetch(path, { ...options, headers });
    if (response.status !== 401) return response;
    const given = await askForKey();
    if (given === null) return response;
    sessionStorage.setItem(KEY_STORAGE, given);
  }
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

async function apiError(response) {
  try {
    const body = await response.json();
    const detail = Array.isArray(body.detail)
      ? body.detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ")
      : body.detail;
    return `${response.status}: ${detail}`;
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

function codeValues() {
  const values = {};
  for (const code of info.codes) {
    const input = $(`code-${code.name}`);
    values[code.name] = code.kind === "categorical" ? parseInt(input.value, 10) : parseFloat(input.value);
  }
  return values;
}

function categoryName(code, value) {
  return code.labels ? code.labels[value] : `${value}`;
}

// The values of a categorical code in the order a person looks for them: by label (digits 0-9) when the
// model has a label map, else by value. Each option still sends the value the model takes.
function pickerOrder(code) {
  const values = [...Array(code.size).keys()];
  if (!code.labels) return values;
  const collator = new Intl.Collator(undefined, { numeric: true });
  return values.sort((a, b) => collator.compare(code.labels[a], code.labels[b]));
}

// A named code reads as its name ("slant"); an unnamed one says what kind it is ("c2 (continuous)").
function codeTitle(code) {
  return /^c\d+$/.test(code.name) ? `${code.name} (${code.kind})` : code.name;
}

function buildControls() {
  const box = $("code-controls");
  box.replaceChildren();
  $("traverse-code").replaceChildren();
  for (const code of info.codes) {
    const row = document.createElement("div");
    row.className = "control";
    const label = document.createElement("label");
    label.htmlFor = `code-${code.name}`;
    label.textContent = codeTitle(code);
    row.append(label);
    if (code.kind === "categorical") {
      const select = document.createElement("select");
      select.id = `code-${code.name}`;
      for (const v of pickerOrder(code)) select.add(new Option(categoryName(code, v), v));
      select.addEventListener("change", scheduleGenerate);
      row.append(select);
    } else {
      // The sliders span the range along which the model keeps the digit (/info's traverse_range).
      const [low, high] = info.traverse_range;
      const slider = Object.assign(document.createElement("input"),
        { type: "range", id: `code-${code.name}`, min: low, max: high, step: 0.05, value: 0 });
      const output = Object.assign(document.createElement("output"), { id: `value-${code.name}`, value: "0.00" });
      output.htmlFor = slider.id;
      slider.addEventListener("input", () => { output.value = Number(slider.value).toFixed(2); scheduleGenerate(); });
      row.append(slider, output);
    }
    box.append(row);
    $("traverse-code").add(new Option(codeTitle(code), code.name));
  }
}

function scheduleGenerate() {
  clearTimeout(debounce);
  debounce = setTimeout(generate, 60);
}

async function generate() {
  if (generation) generation.abort(); // a newer request supersedes the older one
  generation = new AbortController();
  const body = { codes: codeValues(), seed: parseInt($("seed").value, 10), n: parseInt($("count").value, 10) };
  try {
    const response = await api("generate", {
      method: "POST", signal: generation.signal,
      headers: { "Content-Type": "application/json", Accept: "image/png" }, body: JSON.stringify(body),
    });
    if (!response.ok) return showError(await apiError(response));
    const url = URL.createObjectURL(await response.blob());
    const old = $("preview").src;
    $("preview").src = url;
    $("preview").hidden = false;
    if (old.startsWith("blob:")) URL.revokeObjectURL(old);
    $("preview").dataset.request = JSON.stringify(body);
    showError("");
  } catch (error) {
    if (error.name !== "AbortError") showError(`generate failed: ${error.message}`);
  }
}

async function traverse() {
  const target = $("traverse-code").value;
  const params = new URLSearchParams({ code: target, rows: $("traverse-rows").value, seed: $("seed").value });
  for (const [name, value] of Object.entries(codeValues())) if (name !== target) params.set(name, value);
  try {
    const response = await api(`traverse?${params}`, { headers: { Accept: "image/png" } });
    if (!response.ok) return showError(await apiError(response));
    $("traverse-grid").src = URL.createObjectURL(await response.blob());
    $("traverse-grid").hidden = false;
    showError("");
  } catch (error) {
    showError(`traverse failed: ${error.message}`);
  }
}

function setUpCanvas() {
  const canvas = $("canvas");
  const context = canvas.getContext("2d");
  const clear = () => { context.fillStyle = "#fff"; context.fillRect(0, 0, canvas.width, canvas.height); };
  clear();
  let drawing = false;
  const point = (event) => {
    const box = canvas.getBoundingClientRect();
    return [(event.clientX - box.left) * canvas.width / box.width, (event.clientY - box.top) * canvas.height / box.height];
  };
  canvas.addEventListener("pointerdown", (event) => {
    drawing = true;
    canvas.setPointerCapture(event.pointerId);
    context.beginPath();
    context.moveTo(...point(event));
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    Object.assign(context, { lineWidth: 22, lineCap: "round", lineJoin: "round", strokeStyle: "#000" });
    context.lineTo(...point(event));
    context.stroke();
  });
  const stop = () => { drawing = false; };
  canvas.addEventListener("pointerup", stop);
  canvas.addEventListener("pointercancel", stop);
  $("clear-button").addEventListener("click", clear);
  const drawFile = (file) => {
    if (!file) return;
    const image = new Image();
    image.onload = () => { clear(); context.drawImage(image, 0, 0, canvas.width, canvas.height); encode(); };
    image.onerror = () => showError(`${file.name} is not an image the browser can read`);
    image.src = URL.createObjectURL(file);
  };
  $("file").addEventListener("change", () => drawFile($("file").files[0]));
  canvas.addEventListener("dragover", (event) => event.preventDefault());
  canvas.addEventListener("drop", (event) => { event.preventDefault(); drawFile(event.dataTransfer.files[0]); });
}

async function encode() {
  const blob = await new Promise((resolve) => $("canvas").toBlob(resolve, "image/png"));
  try {
    const response = await api("encode", { method: "POST", headers: { "Content-Type": "image/png" }, body: blob });
    if (!response.ok) return showError(await apiError(response));
    encoded = await response.json();
    const lines = info.codes.map((code) => {
      const value = encoded.codes[code.name];
      return code.kind === "categorical"
        ? `${code.name}: ${categoryName(code, value.value)}  p=${Math.max(...value.probabilities).toFixed(2)}`
        : `${code.name}: ${value.toFixed(2)}`;
    });
    $("encode-result").textContent = (encoded.label !== null ? `label: ${encoded.label}\n` : "") + lines.join("\n");
    $("load-codes").hidden = false;
    showError("");
  } catch (error) {
    showError(`encode failed: ${error.message}`);
  }
}

function loadEncodedCodes() {
  for (const code of info.codes) {
    const value = encoded.codes[code.name];
    const input = $(`code-${code.name}`);
    if (code.kind === "categorical") {
      input.value = value.value;
    } else {
      input.value = Math.max(info.traverse_range[0], Math.min(info.traverse_range[1], value));
      $(`value-${code.name}`).value = Number(input.value).toFixed(2);
    }
  }
  generate();
}

// The model's description, and the controls and preview for it.
async function loadModel() {
  try {
    const response = await api("info");
    if (!response.ok) return showError(`cannot load the model description: ${await apiError(response)}`);
    info = await response.json();
  } catch (error) {
    return showError(`cannot reach the service: ${error.message}`);
  }
  const { image } = info;
  $("model-line").textContent = `${info.model.name} v${info.model.version} (${info.model.dataset}), ` +
    `${image.width}x${image.height}x${image.channels}, running on ${info.provider}`;
  $("preview").style.width = `${Math.max(224, image.width * 8)}px`;
  buildControls();
  $("traverse-grid").hidden = true;
  $("load-codes").hidden = true;
  generate();
}

// Several served models: a picker, on the service's default at first.
async function listModels() {
  const response = await api("models");
  if (!response.ok) return;
  const served = await response.json();
  if (served.models.length < 2) return;
  for (const { name } of served.models) $("model").add(new Option(name, name, false, name === served.default));
  $("model").addEventListener("change", () => { model = $("model").value; loadModel(); });
  $("model-choice").hidden = false;
}

async function start() {
  $("controls").addEventListener("submit", (event) => event.preventDefault()); // the page runs no inline script
  setUpCanvas();
  $("seed").addEventListener("input", scheduleGenerate);
  $("count").addEventListener("input", scheduleGenerate);
  $("new-seed").addEventListener("click", () => { $("seed").value = Math.floor(Math.random() * 2 ** 31); generate(); });
  $("traverse-button").addEventListener("click", traverse);
  $("encode-button").addEventListener("click", encode);
  $("load-codes").addEventListener("click", loadEncodedCodes);
  await listModels();
  await loadModel();
}

start();
