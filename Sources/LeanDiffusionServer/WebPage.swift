/// The page at `/`: a form for the prompt and settings, a progress bar fed by the job's server-sent events, the
/// image with its parameters, and the images of this run of the server below. Plain HTML and JavaScript.
enum WebPage {
    static let html = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>LeanDiffusion</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; padding: 0 1rem; color: #222; }
  h1 { font-size: 1.4rem; }
  form { display: grid; grid-template-columns: 9rem 1fr; gap: .4rem .8rem; align-items: center; }
  textarea { width: 100%; min-height: 3.5rem; font: inherit; }
  input[type=number] { width: 7rem; }
  .row { display: flex; gap: .8rem; flex-wrap: wrap; align-items: center; }
  button { font: inherit; padding: .4rem 1.2rem; }
  progress { width: 100%; height: 1.1rem; }
  #status { min-height: 1.2rem; color: #555; }
  #error { color: #b00020; white-space: pre-wrap; }
  #result img { image-rendering: pixelated; width: 256px; height: auto; border: 1px solid #ccc; }
  #params { white-space: pre-wrap; font-family: ui-monospace, monospace; font-size: .85rem; background: #f6f6f6; padding: .6rem; }
  #gallery { display: flex; flex-wrap: wrap; gap: .6rem; }
  #gallery figure { margin: 0; width: 128px; font-size: .75rem; }
  #gallery img { width: 128px; image-rendering: pixelated; border: 1px solid #ddd; }
</style>
</head>
<body>
<h1>LeanDiffusion</h1>
<form id="form">
  <label for="prompt">Prompt</label><textarea id="prompt" name="prompt" required>a red circle on a blue background</textarea>
  <label for="negative">Negative prompt</label><textarea id="negative" name="negative"></textarea>
  <label>Size</label>
  <div class="row"><input id="width" type="number" min="8" step="8" placeholder="model's"> x
    <input id="height" type="number" min="8" step="8" placeholder="model's"></div>
  <label for="steps">Steps</label><input id="steps" type="number" min="1" placeholder="model's">
  <label for="guidance">Guidance</label><input id="guidance" type="number" step="0.1" placeholder="model's">
  <label for="seed">Seed</label><input id="seed" type="number" value="-1" title="-1 = random">
  <label for="sampler">Scheduler</label><select id="sampler"><option value="">model's default</option></select>
  <label for="apikey">API key</label><input id="apikey" type="password" placeholder="only if the server asks for one">
  <span></span><div class="row"><button id="generate" type="submit">Generate</button>
    <button id="cancel" type="button" disabled>Cancel</button></div>
</form>
<p><progress id="progress" max="1" value="0"></progress></p>
<div id="status"></div>
<div id="error"></div>
<div id="result"></div>
<h2>This session</h2>
<div id="gallery"></div>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let current = null;

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("apikey").value || localStorage.getItem("lean-diffusion-key") || "";
  if (key) { h["Authorization"] = "Bearer " + key; localStorage.setItem("lean-diffusion-key", key); }
  return h;
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: headers() });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error((body.error && body.error.message) || response.statusText);
  return body;
}

function number(id) { const v = $(id).value; return v === "" ? undefined : Number(v); }

async function loadSamplers() {
  try {
    for (const s of await api("/sdapi/v1/samplers")) {
      const o = document.createElement("option"); o.value = s.name; o.textContent = s.name; $("sampler").append(o);
    }
  } catch (e) { /* the page works without the list */ }
}

function imageURL(id, n) { return "/v1/jobs/" + encodeURIComponent(id) + "/images/" + n; }

async function showImage(id) {
  const result = await api("/v1/jobs/" + encodeURIComponent(id) + "/result");
  const info = JSON.parse(result.info);
  $("result").innerHTML = "";
  result.images.forEach((b64, n) => {
    const img = document.createElement("img");
    img.src = "data:image/png;base64," + b64; img.alt = info.prompt; img.className = "generated"; img.dataset.job = id;
    $("result").append(img);
  });
  const params = document.createElement("div"); params.id = "params";
  params.textContent = info.infotexts.join("\n\n");
  $("result").append(params);
}

async function refreshGallery() {
  try {
    const list = await api("/v1/jobs");
    $("gallery").innerHTML = "";
    for (const job of list.jobs.filter((j) => j.state === "done")) {
      for (let n = 0; n < job.images; n++) {
        const f = document.createElement("figure");
        const img = document.createElement("img"); img.src = imageURL(job.id, n); img.alt = job.prompt; img.loading = "lazy";
        const c = document.createElement("figcaption"); c.textContent = job.prompt;
        f.append(img, c); $("gallery").append(f);
      }
    }
  } catch (e) { /* keep the old gallery */ }
}

function finished() { current = null; $("generate").disabled = false; $("cancel").disabled = true; }

$("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("error").textContent = ""; $("generate").disabled = true;
  const body = { prompt: $("prompt").value, negative_prompt: $("negative").value, width: number("width"),
                 height: number("height"), steps: number("steps"), cfg_scale: number("guidance"), seed: number("seed") };
  if ($("sampler").value) body.sampler_name = $("sampler").value;
  let job;
  try { job = await api("/v1/jobs", { method: "POST", body: JSON.stringify(body) }); }
  catch (e) { $("error").textContent = e.message; finished(); return; }
  current = job.id; $("cancel").disabled = false;
  $("status").textContent = "queued"; $("progress").value = 0;
  // EventSource cannot send an Authorization header; with an API key, poll instead.
  const update = async (snap) => {
    $("progress").max = Math.max(1, snap.total); $("progress").value = snap.step;
    const eta = snap.eta_seconds == null || snap.state === "done" ? "" : ", about " + snap.eta_seconds.toFixed(1) + " s left";
    $("status").textContent = snap.state + " " + snap.step + "/" + snap.total + eta;
    if (snap.state === "done") { await showImage(snap.id); await refreshGallery(); finished(); return true; }
    if (snap.state === "failed" || snap.state === "cancelled") {
      $("error").textContent = snap.state + (snap.error ? ": " + snap.error : ""); finished(); return true;
    }
    return false;
  };
  if (!headers()["Authorization"]) {
    const events = new EventSource("/v1/jobs/" + encodeURIComponent(job.id) + "/events");
    let settled = false;
    const handle = (e) => {
      const snap = JSON.parse(e.data);
      if (["done", "failed", "cancelled"].includes(snap.state)) { settled = true; events.close(); }
      update(snap);
    };
    for (const name of ["progress", "done", "failed", "cancelled"]) events.addEventListener(name, handle);
    events.onerror = () => { events.close(); if (!settled) poll(job.id, update); };
  } else {
    poll(job.id, update);
  }
});

async function poll(id, update) {
  while (true) {
    let snap;
    try { snap = await api("/v1/jobs/" + encodeURIComponent(id)); } catch (e) { $("error").textContent = e.message; finished(); return; }
    if (await update(snap)) return;
    await new Promise((r) => setTimeout(r, 300));
  }
}

$("cancel").addEventListener("click", async () => {
  if (current) { try { await api("/v1/jobs/" + encodeURIComponent(current), { method: "DELETE" }); } catch (e) {} }
});

loadSamplers();
refreshGallery();
</script>
</body>
</html>
"""#
}
