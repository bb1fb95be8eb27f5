// The page: draw a character (mouse, pen or touch), preview the 28x28 tile the model sees,
// recognize it; or draw a word or a line on a wider pad and see each character boxed; or
// upload image files and see the characters boxed. Plain JS, no build step.
"use strict";

const $ = (id) => document.getElementById(id);

function authHeaders() {
  const key = $("api-key").value.trim();
  return key ? { Authorization: "Bearer " + key } : {};
}

// POST/GET to the API; returns the parsed JSON or throws an Error with the API's message.
async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
  let body = null;
  try { body = await response.json(); } catch (e) { /* not JSON: reported below */ }
  if (!response.ok) {
    const message = body && body.error ? body.error.message : response.statusText;
    const retry = response.headers.get("Retry-After");
    throw new Error(`${response.status}: ${message}${retry ? ` (retry in ${retry}s)` : ""}`);
  }
  return { status: response.status, body };
}

// /v1/recognize answers 202 when the job is not done in time: wait for it on the job URL.
async function recognizeForm(form, timeout) {
  let { status, body } = await api(`/v1/recognize?timeout=${timeout}`, { method: "POST", body: form });
  while (status === 202) {
    ({ status, body } = await api(`${body.links.self}?wait=10`));
    if (body.status === "queued" || body.status === "running") status = 202;
  }
  if (body.status === "failed") throw new Error(body.error ? body.error.message : "the job failed");
  return body;
}

// ---- drawing pad ------------------------------------------------------------------------
const pad = $("pad");
const ctx = pad.getContext("2d");
const boxes = $("pad-boxes");
// The pad's size and pen in each mode. A word pad is three character pads side by side;
// its letters come smaller than a lone character's (five or more share its width), so its
// pen is thinner. Both pens were chosen by measurement: thinner pens read worse on the
// character pad, thicker ones worse on words (docs/reading-real-images.md).
const PAD_SIZES = { char: [280, 280], text: [840, 280] };
const PAD_PENS = { char: 28, text: 20 };
let drawing = false;
let dirty = false;
const strokes = [];  // the drawing's strokes, each a list of [x, y] pad pixels

// A letter drawn small with the pad's pen comes out bold, its loops filled in (EMNIST's
// strokes are about an eighth of a letter's height): the character pad sends its strokes
// drawn again, scaled up (at most MAX_SCALE times) until their longer side is FULL_SIDE
// px, with the same pen. Training-split letters drawn 100 px tall read 62% as drawn, 84%
// at full size (docs/reading-real-images.md).
const FULL_SIDE = 200;
const MAX_SCALE = 4;

function padMode() {
  return $("pad-mode").value === "text" ? "text" : "char";
}

function setPen() {
  ctx.lineWidth = PAD_PENS[padMode()];
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.strokeStyle = "#000";
}

function clearBoxes() {
  boxes.getContext("2d").clearRect(0, 0, boxes.width, boxes.height);
}

function clearResult() {
  clearBoxes();
  $("best-char").textContent = "\u00a0";
  $("best-confidence").textContent = "";
  $("bars").replaceChildren();
  $("chars").replaceChildren();
}

function clearPad() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, pad.width, pad.height);
  dirty = false;
  strokes.length = 0;
  const tile = $("tile").getContext("2d");
  tile.fillStyle = "#000";
  tile.fillRect(0, 0, $("tile").width, $("tile").height);
  clearResult();
  $("draw-status").textContent = "";
}

// Resizing a canvas erases it and resets its pen, so switching modes starts a clean pad.
function setPadMode() {
  const mode = padMode();
  const [width, height] = PAD_SIZES[mode];
  for (const canvas of [pad, boxes]) {
    canvas.width = width;
    canvas.height = height;
  }
  $("draw-panel").classList.toggle("text-mode", mode === "text");
  $("tile-box").hidden = mode === "text";
  $("preview").hidden = mode === "text";  // one tile per character: Recognize boxes them instead
  setPen();
  clearPad();
}

// A new stroke on `context` at (x, y), drawn at once: a tap leaves a dot.
function startStroke(context, x, y) {
  context.beginPath();
  context.moveTo(x, y);
  context.lineTo(x + 0.01, y);
  context.stroke();
}

function padPoint(event) {
  const rect = pad.getBoundingClientRect();
  return [(event.clientX - rect.left) * pad.width / rect.width, (event.clientY - rect.top) * pad.height / rect.height];
}

pad.addEventListener("pointerdown", (event) => {
  event.preventDefault();
  pad.setPointerCapture(event.pointerId);
  drawing = true;
  dirty = true;
  clearBoxes();  // the boxes belong to the drawing as it was
  const [x, y] = padPoint(event);
  strokes.push([[x, y]]);
  startStroke(ctx, x, y);
});
pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const [x, y] = padPoint(event);
  strokes[strokes.length - 1].push([x, y]);
  ctx.lineTo(x, y);
  ctx.stroke();
});
for (const name of ["pointerup", "pointercancel", "pointerleave"]) {
  pad.addEventListener(name, () => { drawing = false; });
}

// The options the drawing and the uploads share: top-k, which characters to read, and
// whether letters come back in the case they are written.
function appendOptions(form) {
  form.append("top_k", $("top-k").value);
  if ($("read-chars").value) form.append("chars", $("read-chars").value);
  if ($("letter-case").value) form.append("case", $("letter-case").value);
}

// The character pad's drawing as it is sent: its strokes scaled up to FULL_SIDE, if smaller.
function fullSizeDrawing() {
  const points = strokes.flat();
  if (padMode() !== "char" || !points.length) return pad;
  const xs = points.map((p) => p[0]);
  const ys = points.map((p) => p[1]);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const scale = Math.min(MAX_SCALE, FULL_SIDE / Math.max(x1 - x0, y1 - y0, 1));
  if (scale <= 1) return pad;
  const copy = document.createElement("canvas");
  copy.width = pad.width;
  copy.height = pad.height;
  const c = copy.getContext("2d");
  c.fillStyle = "#fff";
  c.fillRect(0, 0, copy.width, copy.height);
  Object.assign(c, { lineWidth: ctx.lineWidth, lineCap: "round", lineJoin: "round", strokeStyle: "#000" });
  const at = ([x, y]) => [copy.width / 2 + (x - (x0 + x1) / 2) * scale, copy.height / 2 + (y - (y0 + y1) / 2) * scale];
  for (const stroke of strokes) {
    startStroke(c, ...at(stroke[0]));
    for (const point of stroke.slice(1)) c.lineTo(...at(point));
    c.stroke();
  }
  return copy;
}

function padBlob() {
  return new Promise((resolve) => fullSizeDrawing().toBlob(resolve, "image/png"));
}

async function padForm() {
  const form = new FormData();
  form.append("image", await padBlob(), "drawing.png");
  return form;
}

async function showPreview() {
  const { body } = await api("/v1/preview", { method: "POST", body: await padForm() });
  const small = document.createElement("canvas");
  small.width = body.width;
  small.height = body.height;
  const pixels = small.getContext("2d").createImageData(body.width, body.height);
  body.pixels.flat().forEach((v, i) => { pixels.data.set([v, v, v, 255], i * 4); });
  small.getContext("2d").putImageData(pixels, 0, 0);
  const tile = $("tile").getContext("2d");
  tile.imageSmoothingEnabled = false;  // show the real pixels, enlarged
  tile.drawImage(small, 0, 0, $("tile").width, $("tile").height);
}

function showBars(alternatives) {
  const bars = $("bars");
  bars.replaceChildren();
  for (const alt of alternatives) {
    const item = document.createElement("li");
    const label = document.createElement("span");
    label.className = "char";
    label.textContent = alt.char;
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = `${Math.max(1, Math.round(alt.p * 100))}%`;
    const value = document.createElement("span");
    value.className = "p";
    value.textContent = `${(alt.p * 100).toFixed(1)}%`;
    item.append(label, bar, value);
    bars.append(item);
  }
}

async function guarded(statusId, work) {
  $(statusId).textContent = "working\u2026";
  $(statusId).classList.remove("error");
  try {
    await work();
    $(statusId).textContent = "";
  } catch (error) {
    $(statusId).textContent = error.message;
    $(statusId).classList.add("error");
  }
}

// A word's result: its text, a button per character that shows that character's
// alternatives, and each character's box and reading over the drawing.
function showText(result) {
  $("best-char").textContent = result.text;
  $("best-confidence").textContent = `${(result.confidence * 100).toFixed(1)}% confident on average per character`;
  const buttons = result.characters.map((ch, i) => {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = ch.char;
    button.title = `${(ch.confidence * 100).toFixed(1)}%: show the alternatives`;
    button.addEventListener("click", () => choose(i));
    return button;
  });
  function choose(i) {
    buttons.forEach((b, j) => b.classList.toggle("chosen", i === j));
    showBars(result.characters[i].alternatives);
  }
  $("chars").replaceChildren(...buttons);
  const c = boxes.getContext("2d");
  c.lineWidth = 2;
  c.font = "bold 22px sans-serif";
  c.strokeStyle = c.fillStyle = "#d33";
  for (const ch of result.characters) {
    const [x, y, w, h] = ch.box;
    c.strokeRect(x, y, w, h);
    c.fillText(ch.char, x + 2, y > 24 ? y - 4 : y + h + 22);
  }
  if (buttons.length) {
    // Start on the character the model is least sure of: the one worth checking.
    const confidences = result.characters.map((ch) => ch.confidence);
    choose(confidences.indexOf(Math.min(...confidences)));
  }
}

function showChar(result) {
  const best = result.characters[0];
  $("best-char").textContent = best.char;
  $("best-confidence").textContent = `${(best.confidence * 100).toFixed(1)}% confident`;
  showBars(best.alternatives);
}

$("pad-mode").addEventListener("change", setPadMode);
$("clear").addEventListener("click", clearPad);
$("preview").addEventListener("click", () => guarded("draw-status", async () => {
  if (!dirty) throw new Error("draw a character first");
  await showPreview();
}));
$("recognize").addEventListener("click", () => guarded("draw-status", async () => {
  const mode = padMode();
  if (!dirty) throw new Error(mode === "text" ? "write a word first" : "draw a character first");
  const form = await padForm();
  appendOptions(form);
  form.append("mode", mode);
  clearResult();
  const [job] = await Promise.all([recognizeForm(form, mode === "text" ? 30 : 10),
                                   mode === "char" ? showPreview() : null]);
  const result = job.results[0];
  if (result.error) throw new Error(result.error.message);
  if (mode === "text") showText(result); else showChar(result);
}));

// ---- uploads ----------------------------------------------------------------------------
function drawBoxes(file, result) {
  const figure = document.createElement("figure");
  const canvas = document.createElement("canvas");
  const caption = document.createElement("figcaption");
  figure.append(canvas, caption);
  if (result.error) {
    caption.textContent = `${file.name}: ${result.error.message}`;
    caption.classList.add("error");
  } else {
    caption.textContent = `${file.name}: \u201c${result.text}\u201d (${(result.confidence * 100).toFixed(1)}%)`;
  }
  const image = new Image();
  image.onload = () => {
    canvas.width = image.naturalWidth;
    canvas.height = image.naturalHeight;
    const c = canvas.getContext("2d");
    c.drawImage(image, 0, 0);
    const scale = Math.max(1, image.naturalWidth / 400);
    c.lineWidth = 2 * scale;
    c.font = `${Math.round(14 * scale)}px sans-serif`;
    for (const ch of result.characters) {
      const [x, y, w, h] = ch.box;
      c.strokeStyle = "#d33";
      c.strokeRect(x, y, w, h);
      c.fillStyle = "#d33";
      c.fillText(ch.char, x, Math.max(14 * scale, y - 3 * scale));
    }
    URL.revokeObjectURL(image.src);
  };
  image.onerror = () => {  // a format the browser cannot show (HEIC, TIFF): the caption alone
    canvas.hidden = true;
    URL.revokeObjectURL(image.src);
  };
  image.src = URL.createObjectURL(file);
  return figure;
}

$("upload-form").addEventListener("submit", (event) => {
  event.preventDefault();
  guarded("upload-status", async () => {
    const files = Array.from($("files").files);
    if (!files.length) throw new Error("choose one or more image files");
    const form = new FormData();
    for (const file of files) form.append("image", file, file.name);
    form.append("mode", $("mode").value);
    appendOptions(form);
    const job = await recognizeForm(form, 30);
    $("upload-results").replaceChildren(...files.map((file, i) => drawBoxes(file, job.results[i])));
  });
});

// Files dropped on the panel, or pasted anywhere on the page (a screenshot, a copied
// image), are uploaded as if chosen. Whatever they are: the API says what it cannot read.
function uploadFiles(fileList) {
  if (!fileList.length) return;
  const chosen = new DataTransfer();
  for (const file of fileList) chosen.items.add(file);
  $("files").files = chosen.files;
  $("upload-form").requestSubmit();
}
const uploadPanel = $("upload-panel");
uploadPanel.addEventListener("dragover", (event) => {
  event.preventDefault();
  uploadPanel.classList.add("dropping");
});
uploadPanel.addEventListener("dragleave", () => uploadPanel.classList.remove("dropping"));
uploadPanel.addEventListener("drop", (event) => {
  event.preventDefault();
  uploadPanel.classList.remove("dropping");
  uploadFiles(event.dataTransfer.files);
});
document.addEventListener("paste", (event) => {
  if (event.clipboardData && event.clipboardData.files.length) {
    event.preventDefault();
    uploadFiles(event.clipboardData.files);
  }
});

setPadMode();  // the browser may restore the mode chosen before a reload
