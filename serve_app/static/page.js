// The onboarding page: record or pick a voice sample, clone it, follow the job, play and
// download the result, and manage the person's voices. Plain JavaScript, no build step.
// Limits and refusal messages come from the server's capabilities route: no number or
// wording of the API's checks is repeated here.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const KEY_STORE = "voiceq.apiKey"; // sessionStorage: gone when the tab closes
  const USER_STORE = "voiceq.userId"; // localStorage: not a secret, and voices are kept under it
  const STEP_LABELS = {
    uploading: "Uploading",
    queued: "Queued",
    processing: "Processing",
    completed: "Completed",
  };

  let caps = null; // GET {API}/capabilities
  let sample = null; // {blob, name, seconds}
  let recorder = null;
  let busy = false;
  let retryTimer = null;
  let keyTimer = null;
  let holding = false; // a Retry-After is counting down: submitting waits for it

  // --- small helpers ----------------------------------------------------------------------

  // Fills a server template: {name} or {name:spec} with Python's .Nf and g specs.
  function fill(template, values) {
    return template.replace(/\{(\w+)(?::([^}]*))?\}/g, (whole, name, spec) => {
      if (!(name in values)) return whole;
      const value = values[name];
      const fixed = /^\.(\d+)f$/.exec(spec || "");
      if (fixed) return Number(value).toFixed(Number(fixed[1]));
      if (spec === "g") return String(Number(value));
      return String(value);
    });
  }

  function api(path) {
    return caps.apiPrefix + path;
  }

  function apiKey() {
    return (sessionStorage.getItem(KEY_STORE) || "").trim();
  }

  function authHeaders(extra) {
    const headers = new Headers(extra || {});
    const key = apiKey();
    if (key) headers.set("Authorization", "Bearer " + key);
    return headers;
  }

  function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  function newId() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function show(el, text) {
    el.textContent = text;
    el.hidden = !text;
  }

  function focusOn(el) {
    el.focus({ preventScroll: false });
    if (el.scrollIntoView) el.scrollIntoView({ block: "nearest" });
  }

  function formatBytes(bytes) {
    if (bytes >= 1048576) return Number((bytes / 1048576).toFixed(1)) + " MB";
    return Math.max(1, Math.round(bytes / 1024)) + " KB";
  }

  // A server message as a sentence the page can add to.
  function sentence(text) {
    const trimmed = String(text || "").trim();
    return /[.!?)]$/.test(trimmed) ? trimmed : trimmed + ".";
  }

  async function readJson(response) {
    try {
      return await response.json();
    } catch (err) {
      return null;
    }
  }

  function retryAfterSeconds(response) {
    const raw = response.headers.get("Retry-After");
    if (!raw) return null;
    const seconds = Number(raw);
    if (Number.isFinite(seconds)) return Math.max(0, Math.ceil(seconds));
    const when = Date.parse(raw);
    return Number.isNaN(when) ? null : Math.max(0, Math.ceil((when - Date.now()) / 1000));
  }

  // What went wrong, for a person. Logic goes by status and the body's stable `code`; the
  // server's message is what the person reads.
  function problem(response, body) {
    const code = (body && body.code) || "";
    const message = (body && (body.error || body.message)) || "";
    const retry = retryAfterSeconds(response);
    const status = response.status;
    if (status === 401 || code === "unauthorized") {
      return { kind: "key", text: "Your API key was not accepted: " + sentence(message || "unauthorized") };
    }
    if (status === 403 || code === "forbidden") {
      return { kind: "error", text: "This key may not do that: " + sentence(message) };
    }
    if (status === 413 || code === "payload_too_large") {
      return { kind: "error", text: message || "The file is too large for this server." };
    }
    if (status === 429 || code === "rate_limited") {
      return { kind: "retry", retry: retry, text: "Too many jobs for now: " + sentence(message) };
    }
    if (status === 503 || ["queue_full", "store_unavailable", "storage_unavailable", "service_unavailable"].includes(code)) {
      return { kind: "retry", retry: retry, text: "The service is busy or briefly unavailable: " + sentence(message) };
    }
    if (message) return { kind: "error", text: message, field: body.field };
    return { kind: "error", text: "The server answered " + status + " " + response.statusText + "." };
  }

  // --- the key ----------------------------------------------------------------------------

  function showKeyPrompt(text) {
    $("key-section").hidden = false;
    show($("key-prompt"), text);
    focusOn($("api-key"));
  }

  function setupKey() {
    const input = $("api-key");
    $("key-section").hidden = !caps.authRequired;
    input.value = apiKey();
    input.addEventListener("input", () => {
      const value = input.value.trim();
      if (value) sessionStorage.setItem(KEY_STORE, value);
      else sessionStorage.removeItem(KEY_STORE);
      show($("key-prompt"), "");
      // The person's voices appear once a key is typed or pasted (not on every keystroke).
      clearTimeout(keyTimer);
      keyTimer = setTimeout(loadVoices, 400);
    });
    $("forget-key").addEventListener("click", () => {
      sessionStorage.removeItem(KEY_STORE);
      input.value = "";
      focusOn(input);
    });
  }

  // --- the sample -------------------------------------------------------------------------

  function refuseSample(text) {
    sample = null;
    $("sample-preview").hidden = true;
    show($("sample-info"), "");
    show($("sample-error"), text);
    focusOn($("sample-error"));
  }

  async function durationOf(blob) {
    // An offline context decodes without asking to play anything (no autoplay policy).
    const Offline = window.OfflineAudioContext || window.webkitOfflineAudioContext;
    if (!Offline) return null;
    const context = new Offline(1, 1, 44100);
    try {
      const buffer = await context.decodeAudioData(await blob.arrayBuffer());
      return buffer.duration;
    } catch (err) {
      return null; // not decodable here: the server decides (and says why)
    }
  }

  async function setSample(blob, name) {
    show($("sample-error"), "");
    show($("sample-info"), "Checking the sample…");
    const limits = caps.limits;
    if (blob.size > limits.maxUploadBytes) {
      refuseSample(fill(caps.messages.tooLarge, { size: blob.size }));
      return;
    }
    const seconds = await durationOf(blob);
    if (seconds !== null) {
      if (seconds > limits.maxAudioS) {
        refuseSample(caps.messages.tooLong);
        return;
      }
      if (seconds < limits.minAudioS) {
        refuseSample(fill(caps.messages.tooShort, { seconds: seconds }));
        return;
      }
    }
    sample = { blob: blob, name: name, seconds: seconds };
    const preview = $("sample-preview");
    if (preview.src) URL.revokeObjectURL(preview.src);
    preview.src = URL.createObjectURL(blob);
    preview.hidden = false;
    const size = formatBytes(blob.size);
    $("sample-info").dataset.seconds = seconds === null ? "" : seconds.toFixed(3);
    show($("sample-info"), seconds === null
      ? "Sample ready (" + size + "); its length will be checked by the server."
      : "Sample ready: " + seconds.toFixed(1) + " s (" + size + ").");
  }

  function pickedFile() {
    const file = $("audio-file").files[0];
    if (file) setSample(file, file.name);
  }

  function recordingType() {
    const types = ["audio/webm;codecs=opus", "audio/webm", "audio/ogg;codecs=opus", "audio/mp4"];
    return types.find((t) => window.MediaRecorder && MediaRecorder.isTypeSupported(t)) || "";
  }

  async function startRecording() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia || !window.MediaRecorder) {
      refuseSample("Recording needs a secure page (https, or this computer's own address) and a browser that "
        + "records audio. Choose a file instead.");
      return;
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (err) {
      refuseSample("The microphone is not available (" + err.message + "). Allow it, or choose a file instead.");
      return;
    }
    const type = recordingType();
    const chunks = [];
    recorder = new MediaRecorder(stream, type ? { mimeType: type } : undefined);
    const started = performance.now();
    // Stop just short of the limit: the recorder adds a little after stop() is called.
    const limitMs = Math.max(0, caps.limits.maxAudioS - 0.5) * 1000;
    const tick = setInterval(() => {
      const elapsed = performance.now() - started;
      $("rec-time").textContent = "Recording: " + (elapsed / 1000).toFixed(0) + " s of at most "
        + fill("{s:g}", { s: caps.limits.maxAudioS }) + " s";
      if (elapsed >= limitMs) stopRecording();
    }, 250);
    recorder.addEventListener("dataavailable", (event) => {
      if (event.data.size) chunks.push(event.data);
    });
    recorder.addEventListener("stop", () => {
      clearInterval(tick);
      stream.getTracks().forEach((track) => track.stop());
      const mime = recorder.mimeType || type || "audio/webm";
      const ext = mime.includes("mp4") ? "m4a" : mime.includes("ogg") ? "ogg" : "webm";
      recorder = null;
      $("record").disabled = false;
      $("stop").disabled = true;
      $("rec-time").textContent = "Recording stopped.";
      setSample(new Blob(chunks, { type: mime }), "recording." + ext);
      focusOn($("record"));
    });
    recorder.start(250);
    $("record").disabled = true;
    $("stop").disabled = false;
    $("rec-time").textContent = "Recording…";
    focusOn($("stop"));
  }

  function stopRecording() {
    if (recorder && recorder.state !== "inactive") recorder.stop();
  }

  // --- models, languages, consent ---------------------------------------------------------

  function selectedModel() {
    const name = $("model").value || caps.defaultModel;
    return caps.models.find((m) => m.name === name) || caps.models[0];
  }

  function setupModels() {
    const select = $("model");
    caps.models.forEach((model) => {
      const option = document.createElement("option");
      option.value = model.name;
      option.textContent = model.description;
      select.appendChild(option);
    });
    select.value = caps.defaultModel;
    $("model-row").hidden = caps.models.length < 2;
    select.addEventListener("change", updateLanguages);
    updateLanguages();
  }

  function updateLanguages() {
    const model = selectedModel();
    const select = $("language");
    const previous = select.value;
    select.textContent = "";
    (model.languages || []).forEach((language) => {
      const option = document.createElement("option");
      option.value = language.code;
      option.textContent = language.name + " (" + language.code + ")";
      select.appendChild(option);
    });
    const browser = (navigator.language || "en").slice(0, 2).toLowerCase();
    const codes = (model.languages || []).map((l) => l.code);
    select.value = codes.includes(previous) ? previous : codes.includes(browser) ? browser : (codes[0] || "");
    $("language-row").hidden = !model.languages;
  }

  function addChoice(form) {
    const model = selectedModel();
    form.append("model", model.name);
    if (model.languages) form.append("language", $("language").value);
  }

  // --- submitting and following a job -----------------------------------------------------

  function setBusy(value) {
    busy = value;
    $("submit").disabled = value || holding;
    document.querySelectorAll(".speak button, .speak input").forEach((el) => { el.disabled = value; });
  }

  function resetProgress(steps) {
    const list = $("steps");
    list.textContent = "";
    steps.forEach((step) => {
      const item = document.createElement("li");
      item.dataset.step = step;
      item.textContent = STEP_LABELS[step];
      list.appendChild(item);
    });
    $("progress").hidden = false;
    $("progress").dataset.seen = "";
    $("progress").dataset.status = "";
    $("result").hidden = true;
    show($("form-error"), "");
  }

  // Marks `status` as the current step (earlier steps done) and says what is happening.
  function showStatus(status, text) {
    const progress = $("progress");
    progress.dataset.status = status;
    const seen = progress.dataset.seen ? progress.dataset.seen.split(" ") : [];
    if (!seen.includes(status)) seen.push(status);
    progress.dataset.seen = seen.join(" ");
    const items = Array.from($("steps").children);
    if (["failed", "cancelled", "refused"].includes(status)) {
      // The step it stopped at turns red; the steps it got through stay done.
      const stopped = items.find((item) => item.className !== "done");
      items.forEach((item) => item.removeAttribute("aria-current"));
      if (stopped) stopped.className = "failed";
    } else {
      const at = items.findIndex((item) => item.dataset.step === status);
      items.forEach((item, i) => {
        item.removeAttribute("aria-current");
        item.className = i < at ? "done" : "";
        if (i === at) {
          item.className = status === "completed" ? "done" : "current";
          item.setAttribute("aria-current", "step");
        }
      });
    }
    $("status-text").textContent = text;
  }

  function failWith(status, text) {
    showStatus(status, text);
    show($("form-error"), text);
    focusOn($("form-error"));
  }

  // Holds the button for a Retry-After. The message is announced once; the countdown runs
  // on the button, which screen readers do not re-read every second.
  function holdFor(seconds, text) {
    clearInterval(retryTimer);
    const button = $("submit");
    const label = button.dataset.label || button.textContent;
    button.dataset.label = label;
    let left = seconds === null ? 5 : seconds;
    show($("form-error"), text + " Try again in " + left + " s.");
    const render = () => {
      button.textContent = left > 0 ? label + " (in " + left + " s)" : label;
    };
    render();
    holding = left > 0;
    button.disabled = busy || holding;
    retryTimer = setInterval(() => {
      left -= 1;
      render();
      if (left <= 0) {
        clearInterval(retryTimer);
        holding = false;
        button.disabled = busy;
      }
    }, 1000);
  }

  function refused(response, body) {
    const what = problem(response, body);
    showStatus("refused", what.text);
    if (what.kind === "key") {
      showKeyPrompt(what.text);
      show($("form-error"), what.text);
      return;
    }
    if (what.kind === "retry") {
      holdFor(what.retry, what.text);
      focusOn($("form-error"));
      return;
    }
    if (what.field === "audio_file") {
      show($("sample-error"), what.text);
    }
    show($("form-error"), what.text);
    focusOn($("form-error"));
  }

  async function submitJob(form, label) {
    setBusy(true);
    resetProgress(caps.queued ? ["uploading", "queued", "processing", "completed"]
      : ["uploading", "processing", "completed"]);
    showStatus("uploading", "Uploading " + label + "…");
    // A connection lost before the answer is retried once with the same Idempotency-Key:
    // if the first attempt did reach the server, the answer is that job, not a second one.
    const headers = authHeaders({ "Idempotency-Key": newId() });
    let response;
    for (let attempt = 1; !response; attempt += 1) {
      try {
        const pending = fetch(api("/clone"), { method: "POST", body: form, headers: headers });
        if (!caps.queued) showStatus("processing", "Processing: cloning the voice while you wait…");
        response = await pending;
      } catch (err) {
        if (attempt < 2) {
          await sleep(1000);
          continue;
        }
        failWith("failed", "Could not reach the server (" + err.message + "). Check the connection and try again.");
        setBusy(false);
        return;
      }
    }
    const body = await readJson(response);
    try {
      if (response.status === 200 && body && body.success) {
        showStatus("processing", "Processing done.");
        await showResult(body.sample_audio, body);
      } else if (response.status === 202 && body && body.statusUrl) {
        showStatus("queued", "Queued: waiting for a free voice engine.");
        await follow(body.statusUrl);
      } else if ((response.status === 504 || response.status === 503) && body && body.jobId && body.statusUrl) {
        // Development's answers for a job that exists but is not done yet (too slow, or to be
        // retried after a temporary error): follow it like a queued one.
        showStatus("processing", sentence(body.error));
        await follow(body.statusUrl);
      } else if (body && body.jobId && body.status === "failed") {
        failWith("failed", "Failed: " + body.error);
      } else {
        refused(response, body);
      }
    } finally {
      setBusy(false);
    }
  }

  function queuedText(job, since) {
    let text = "Queued: waiting for a free voice engine";
    text += " (" + Math.round((Date.now() - since) / 1000) + " s so far).";
    // queuePosition 0 is next; the wait is the server's estimate (null until it has a measure).
    if (typeof job.queuePosition === "number") {
      text += job.queuePosition === 0 ? " Next in the queue" : " Position " + (job.queuePosition + 1) + " in the queue";
      text += typeof job.estimatedWaitS === "number"
        ? ", about " + Math.max(1, Math.round(job.estimatedWaitS)) + " s to go." : ".";
    }
    if (job.attempts > 0 && job.error) {
      text += " The last attempt hit a temporary error (" + job.error + "); it will be tried again ("
        + "attempt " + (job.attempts + 1) + " of " + job.maxAttempts + ").";
    }
    return text;
  }

  async function follow(statusUrl) {
    const since = Date.now();
    let delay = 500;
    for (;;) {
      await sleep(delay);
      delay = Math.min(2000, delay + 250);
      let response;
      try {
        response = await fetch(statusUrl, { headers: authHeaders() });
      } catch (err) {
        showStatus($("progress").dataset.status, "Lost the connection; trying again…");
        delay = 3000;
        continue;
      }
      const job = await readJson(response);
      if (!response.ok) {
        const what = problem(response, job);
        if (what.kind === "retry") {
          showStatus($("progress").dataset.status, what.text + " Checking again shortly.");
          delay = 1000 * (what.retry || 5);
          continue;
        }
        failWith("failed", what.text);
        if (what.kind === "key") showKeyPrompt(what.text);
        return;
      }
      if (job.status === "pending") {
        showStatus("queued", queuedText(job, since));
      } else if (job.status === "processing") {
        showStatus("processing", "Processing: cloning the voice" + (job.workerInfo && job.workerInfo.gpuType
          ? " on " + job.workerInfo.gpuType : "") + "…");
      } else if (job.status === "completed") {
        await showResult(job.resultUrl, job);
        return;
      } else if (job.status === "failed") {
        failWith("failed", "Failed: " + (job.error || "voice cloning failed") + ".");
        return;
      } else if (job.status === "cancelled") {
        failWith("cancelled", "Cancelled" + (job.error ? ": " + job.error : "") + ".");
        return;
      }
    }
  }

  async function audioBlob(url) {
    if (url.startsWith("data:")) {
      // Development's answer carries the clip inline (the page's CSP lets it fetch only its own routes).
      const [head, data] = url.split(",", 2);
      const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
      return new Blob([bytes], { type: head.slice(5).split(";")[0] || "audio/mpeg" });
    }
    const response = await fetch(url, { headers: authHeaders() });
    if (!response.ok) throw new Error(problem(response, await readJson(response)).text);
    return response.blob();
  }

  async function showResult(url, job) {
    const audio = $("result-audio");
    const link = $("download");
    const name = job.voice_name || job.voiceName || "cloned-voice";
    let src = url;
    const absolute = /^https?:/i.test(url) && new URL(url).origin !== location.origin;
    if (!absolute) {
      // Our own route needs the key, which an <audio src> cannot send: fetch, then play the blob.
      try {
        src = URL.createObjectURL(await audioBlob(url));
      } catch (err) {
        failWith("failed", "The clip is made but could not be fetched: " + err.message);
        return;
      }
    }
    if (audio.dataset.blob) URL.revokeObjectURL(audio.dataset.blob);
    audio.dataset.blob = absolute ? "" : src;
    audio.src = src;
    audio.load();
    link.href = src;
    link.download = name.replace(/[^\w.-]+/g, "-").replace(/^-+|-+$/g, "") + ".mp3";
    const seconds = job.processingTime ? " in " + Number(job.processingTime).toFixed(1) + " s" : "";
    $("result-meta").textContent = "Voice “" + name + "” (" + (job.voice_id || job.voiceId || "") + "), made" + seconds
      + (job.watermarked ? "; watermarked." : ".");
    showStatus("completed", "Completed: your cloned voice is ready.");
    $("result").hidden = false;
    focusOn($("result-heading"));
    loadVoices();
  }

  function checkForm() {
    const messages = caps.messages;
    if (caps.authRequired && !apiKey()) {
      showKeyPrompt("This server needs an API key: enter yours here, then submit again.");
      return null;
    }
    if (!sample) {
      show($("form-error"), "Record or choose a voice sample first.");
      focusOn($("record"));
      return null;
    }
    const model = selectedModel();
    if (model.minReferenceS && sample.seconds !== null && sample.seconds <= model.minReferenceS) {
      return formProblem(fill(model.shortReference, { seconds: sample.seconds }), $("audio-file"));
    }
    const name = $("voice-name").value.trim();
    if (!name) return formProblem(messages.nameRequired, $("voice-name"));
    if (name.length > caps.limits.maxNameChars) {
      return formProblem(fill(messages.nameTooLong, { length: name.length }), $("voice-name"));
    }
    const text = $("sample-text").value.trim();
    if (text.length > caps.limits.maxTextChars) {
      return formProblem(fill(messages.textTooLong, { length: text.length }), $("sample-text"));
    }
    const form = new FormData();
    form.append("audio_file", sample.blob, sample.name);
    form.append("user_id", userId());
    form.append("voice_name", name);
    if (text) form.append("sample_text", text);
    addChoice(form);
    const subject = $("consent-subject").value.trim();
    const reference = $("consent-reference").value.trim();
    if (caps.consentRequired && !($("consent-ok").checked && subject && reference)) {
      return formProblem(messages.consentRequired, $("consent-ok").checked ? (subject ? $("consent-reference")
        : $("consent-subject")) : $("consent-ok"));
    }
    if ($("consent-ok").checked && subject && reference) {
      form.append("consent_subject", subject);
      form.append("consent_at", String(Math.floor(Date.now() / 1000)));
      form.append("consent_reference", reference);
    }
    return form;
  }

  function formProblem(text, field) {
    show($("form-error"), text);
    if (field) field.setAttribute("aria-invalid", "true");
    focusOn(field || $("form-error"));
    return null;
  }

  function userId() {
    return $("user-id").value.trim();
  }

  // --- the person's voices ----------------------------------------------------------------

  let voiceLoads = 0; // loads of the voice list in flight

  async function loadVoices() {
    const status = $("voices-status");
    const list = $("voice-list");
    if (!caps || !userId()) return;
    if (caps.authRequired && !apiKey()) {
      status.textContent = "Enter your API key to see your voices.";
      list.textContent = "";
      return;
    }
    // The list is rebuilt when the answer comes: aria-busy tells assistive technology (and a
    // person's scripts) that its items are about to be replaced.
    voiceLoads += 1;
    list.setAttribute("aria-busy", "true");
    try {
      let response;
      try {
        response = await fetch(api("/voices?user_id=" + encodeURIComponent(userId())), { headers: authHeaders() });
      } catch (err) {
        status.textContent = "Could not load your voices (" + err.message + ").";
        return;
      }
      const body = await readJson(response);
      if (!response.ok) {
        status.textContent = problem(response, body).text;
        return;
      }
      list.textContent = "";
      body.voices.forEach((voice) => list.appendChild(voiceItem(voice)));
      status.textContent = body.voices.length
        ? body.voices.length + (body.voices.length === 1 ? " voice." : " voices.")
        : "No voices yet: clone one above.";
    } finally {
      voiceLoads -= 1;
      if (voiceLoads === 0) list.removeAttribute("aria-busy");
    }
  }

  function voiceItem(voice) {
    const item = document.createElement("li");
    item.dataset.voiceId = voice.voiceId;
    const title = document.createElement("h3");
    title.textContent = voice.name;
    const meta = document.createElement("p");
    meta.className = "note";
    meta.textContent = "Made " + new Date(voice.createdAt * 1000).toLocaleString() + " · " + voice.voiceId;
    const form = document.createElement("form");
    form.className = "speak";
    const inputId = "speak-" + voice.voiceId;
    const label = document.createElement("label");
    label.htmlFor = inputId;
    label.textContent = "Text for “" + voice.name + "” to say";
    const input = document.createElement("input");
    input.id = inputId;
    input.name = "sample_text";
    input.maxLength = caps.limits.maxTextChars;
    input.required = true;
    const speak = document.createElement("button");
    speak.type = "submit";
    speak.textContent = "Speak";
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "danger";
    remove.textContent = "Delete";
    remove.setAttribute("aria-label", "Delete the voice “" + voice.name + "”");
    form.append(label, input, speak, remove);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      speakWith(voice, input);
    });
    remove.addEventListener("click", () => deleteVoice(voice));
    item.append(title, meta, form);
    return item;
  }

  function speakWith(voice, input) {
    if (busy) return;
    const text = input.value.trim();
    if (!text) {
      show($("form-error"), "");
      $("voices-status").textContent = "Type what “" + voice.name + "” should say.";
      focusOn(input);
      return;
    }
    if (caps.authRequired && !apiKey()) {
      showKeyPrompt("This server needs an API key: enter yours here, then try again.");
      return;
    }
    const form = new FormData();
    form.append("user_id", userId());
    form.append("voice_name", voice.name);
    form.append("voice_id", voice.voiceId);
    form.append("sample_text", text);
    addChoice(form);
    submitJob(form, "the text for “" + voice.name + "”");
  }

  async function deleteVoice(voice) {
    if (!window.confirm("Delete the voice “" + voice.name + "”? Its sample and prepared voice are removed for good.")) {
      return;
    }
    const status = $("voices-status");
    let response;
    try {
      response = await fetch(api("/voices/" + encodeURIComponent(voice.voiceId)), {
        method: "DELETE", headers: authHeaders(),
      });
    } catch (err) {
      status.textContent = "Could not delete it (" + err.message + ").";
      return;
    }
    const body = await readJson(response);
    if (!response.ok) {
      const what = problem(response, body);
      status.textContent = what.text;
      if (what.kind === "key") showKeyPrompt(what.text);
      return;
    }
    await loadVoices();
    status.textContent = "Deleted “" + voice.name + "”.";
    focusOn($("voices-heading"));
  }

  // --- start ------------------------------------------------------------------------------

  async function start() {
    let response;
    try {
      response = await fetch("/api/public/voice/onboarding/capabilities");
    } catch (err) {
      show($("load-error"), "Could not reach the voice service (" + err.message + "). Reload to try again.");
      return;
    }
    if (!response.ok) {
      show($("load-error"), "The voice service is not ready (" + response.status + "). Reload to try again.");
      return;
    }
    caps = await response.json();
    const limits = caps.limits;
    $("mode").textContent = caps.queued
      ? "Your request joins a queue; this page follows it until your clip is ready."
      : "Development mode: your clip is made while you wait.";
    $("audio-help").textContent = "Between " + fill("{a:g}", { a: limits.minAudioS }) + " and "
      + fill("{b:g}", { b: limits.maxAudioS }) + " seconds, at most "
      + formatBytes(limits.maxUploadBytes) + "; " + caps.acceptedFormats + ".";
    $("voice-name").maxLength = limits.maxNameChars;
    $("sample-text").maxLength = limits.maxTextChars;
    $("sample-text").placeholder = caps.defaultSampleText;
    $("consent").hidden = !caps.consentRequired;
    $("voices-heading").tabIndex = -1;
    const user = $("user-id");
    let stored = localStorage.getItem(USER_STORE);
    if (!stored) {
      stored = "web-" + newId().replace(/-/g, "").slice(0, 12);
      localStorage.setItem(USER_STORE, stored);
    }
    user.value = stored;
    user.addEventListener("change", () => {
      if (userId()) localStorage.setItem(USER_STORE, userId());
      loadVoices();
    });
    setupKey();
    setupModels();
    $("record").addEventListener("click", startRecording);
    $("stop").addEventListener("click", stopRecording);
    $("audio-file").addEventListener("change", pickedFile);
    $("refresh-voices").addEventListener("click", loadVoices);
    document.querySelectorAll("input, textarea, select").forEach((el) => {
      el.addEventListener("input", () => el.removeAttribute("aria-invalid"));
    });
    $("clone-form").addEventListener("submit", (event) => {
      event.preventDefault();
      if (busy) return;
      show($("form-error"), "");
      const form = checkForm();
      if (form) submitJob(form, "your sample");
    });
    document.body.dataset.ready = "true";
    loadVoices();
  }

  start();
})();
