// ferkit's page: send a photo or webcam frames to /v1/predict and draw what comes back.
// Plain JS, no build step. Server strings are always set with textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const els = {
  file: $("file"), drop: $("dropzone"), example: $("example"), webcam: $("webcam"), status: $("status"),
  stage: $("stage"), photo: $("photo"), video: $("video"), overlay: $("overlay"), faces: $("faces"),
};
let stream = null;   // the webcam's MediaStream while it runs
let photoUrl = null; // object URL of the photo shown
let unshown = false; // the browser cannot draw the photo (HEIC in Chrome): faces listed only
let shownResult = null; // the last photo's answer, to say so when the photo fails after it

function setStatus(text, kind = "") {
  els.status.textContent = text;
  els.status.className = kind;
}

async function predict(blob, name) {
  const form = new FormData();
  form.append("file", blob, name || "image.jpg");
  const res = await fetch("/v1/predict", { method: "POST", body: form });
  let body = null;
  try { body = await res.json(); } catch { /* not JSON: reported below */ }
  if (!res.ok) {
    throw new Error(body && body.detail ? body.detail : `the server answered HTTP ${res.status}`);
  }
  return body;
}

const pct = (p) => `${(100 * p).toFixed(1)}%`;

function render(result) {
  const { width, height } = result.image;
  els.overlay.replaceChildren();
  els.faces.replaceChildren();
  result.faces.forEach((face, i) => {
    const [x, y, w, h] = face.box;
    const box = document.createElement("div");
    box.className = "box" + (y < 0.08 * height ? " top" : "");
    Object.assign(box.style, {
      left: `${(100 * x) / width}%`, top: `${(100 * y) / height}%`,
      width: `${(100 * w) / width}%`, height: `${(100 * h) / height}%`,
    });
    const tag = document.createElement("span");
    tag.className = "tag";
    tag.dataset.label = face.label;
    tag.textContent = `${i + 1}: ${face.label} ${pct(face.confidence)}`;
    box.append(tag);
    els.overlay.append(box);
    els.faces.append(faceCard(face, i, result.labels));
  });
  const n = result.faces.length;
  const ms = Math.round(result.timing_ms.total);
  const note = unshown ? " This browser cannot show the photo's format; its faces are listed below." : "";
  if (n === 0) {
    setStatus("No face found. Try a well-lit, frontal face that fills more of the picture.", "warn");
  } else {
    setStatus(`${n} face${n === 1 ? "" : "s"} found (${ms} ms on the server).${note}`);
  }
}

function faceCard(face, i, labels) {
  const card = document.createElement("div");
  card.className = "face";
  const title = document.createElement("h2");
  title.textContent = `Face ${i + 1}: ${face.label} (${pct(face.confidence)})`;
  card.append(title);
  for (const name of labels) {
    const p = face.emotions[name] ?? 0;
    const row = document.createElement("div");
    row.className = "bar" + (name === face.label ? " best" : "");
    const label = document.createElement("span");
    label.textContent = name;
    const track = document.createElement("span");
    track.className = "track";
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.display = "block";
    fill.style.width = pct(p);
    track.append(fill);
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = pct(p);
    row.append(label, track, value);
    card.append(row);
  }
  return card;
}

async function showPhoto(file) {
  stopWebcam();
  if (!file) return;
  if (photoUrl) URL.revokeObjectURL(photoUrl);
  unshown = false;
  shownResult = null;
  photoUrl = URL.createObjectURL(file);
  els.photo.src = photoUrl;
  els.photo.hidden = false;
  els.video.hidden = true;
  els.stage.hidden = false;
  els.overlay.replaceChildren();
  els.faces.replaceChildren();
  setStatus(`Analysing ${file.name}…`);
  try {
    shownResult = await predict(file, file.name);
    render(shownResult);
  } catch (err) {
    setStatus(`Error: ${err.message}`, "error");
  }
}

async function startWebcam() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    setStatus("Error: this browser gives no camera access here (it needs https or localhost).", "error");
    return;
  }
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 } });
  } catch (err) {
    setStatus(`Error: no camera (${err.message || err.name}).`, "error");
    return;
  }
  els.video.srcObject = stream;
  unshown = false;
  await els.video.play();
  els.photo.hidden = true;
  els.video.hidden = false;
  els.stage.hidden = false;
  els.webcam.textContent = "Stop webcam";
  els.webcam.classList.add("on");
  setStatus("Webcam on.");
  liveLoop(stream);
}

// One request at a time: the next frame is sent when the previous answer has come back, so
// a slow server lowers the frame rate instead of building a queue.
async function liveLoop(own) {
  const canvas = document.createElement("canvas");
  while (stream === own) {
    const w = els.video.videoWidth, h = els.video.videoHeight;
    if (!w || !h) { await new Promise((r) => setTimeout(r, 100)); continue; }
    const scale = Math.min(1, 640 / w);
    canvas.width = Math.round(w * scale);
    canvas.height = Math.round(h * scale);
    canvas.getContext("2d").drawImage(els.video, 0, 0, canvas.width, canvas.height);
    const blob = await new Promise((r) => canvas.toBlob(r, "image/jpeg", 0.85));
    try {
      const result = await predict(blob, "frame.jpg");
      if (stream === own) render(result);
    } catch (err) {
      if (stream === own) setStatus(`Error: ${err.message}`, "error");
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

function stopWebcam() {
  if (!stream) return;
  stream.getTracks().forEach((t) => t.stop());
  stream = null;
  els.video.srcObject = null;
  els.webcam.textContent = "Start webcam";
  els.webcam.classList.remove("on");
  setStatus("Webcam off.");
}

// The server reads formats some browsers cannot draw (HEIC in Chrome): list the faces alone
els.photo.addEventListener("error", () => {
  if (!photoUrl || els.photo.src !== photoUrl) return;
  unshown = true;
  els.stage.hidden = true;
  if (shownResult) render(shownResult);
});
els.file.addEventListener("change", () => showPhoto(els.file.files[0]));
els.webcam.addEventListener("click", () => (stream ? stopWebcam() : startWebcam()));
// The example is a photo shipped with the page (static/example.jpg), sent as an upload is.
els.example.addEventListener("click", async () => {
  try {
    const res = await fetch("/static/example.jpg");
    if (!res.ok) throw new Error(`the example photo is missing (HTTP ${res.status})`);
    showPhoto(new File([await res.blob()], "example.jpg", { type: "image/jpeg" }));
  } catch (err) {
    setStatus(`Error: ${err.message}`, "error");
  }
});
// `ferkit webcam` opens the page as /?webcam: start the camera at once (the browser asks first)
if (new URLSearchParams(location.search).has("webcam")) startWebcam();
els.drop.addEventListener("dragover", (e) => { e.preventDefault(); els.drop.classList.add("over"); });
els.drop.addEventListener("dragleave", () => els.drop.classList.remove("over"));
els.drop.addEventListener("drop", (e) => {
  e.preventDefault();
  els.drop.classList.remove("over");
  showPhoto(e.dataTransfer.files[0]);
});

fetch("/v1/model")
  .then((r) => (r.ok ? r.json() : null))
  .then((m) => {
    if (!m) return;
    // the checkpoint's own scores (models/checkpoint.py): test split if it had one, else val
    const mt = m.metrics || {};
    const [acc, n, split] = mt.test_accuracy != null
      ? [mt.test_accuracy, mt.test_n, "test"] : [mt.val_accuracy, mt.val_n, "validation"];
    const count = n ? `${n.toLocaleString("en-US")} ` : "";
    const score = acc != null ? `, ${pct(acc)} accuracy on ${count}${split} faces` : "";
    $("model-info").textContent = `Model: ${m.arch}${score} (${m.backend}).`;
  })
  .catch(() => {});
