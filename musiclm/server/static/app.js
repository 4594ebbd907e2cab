// The studio page: compose a request, follow its progress, listen, look, compare and download.
"use strict";

(() => {
  const { api, el, seconds } = musiclm;
  const HISTORY_KEY = "musiclm-studio-history";
  const FINISHED = new Set(["done", "failed", "cancelled", "expired"]);
  const STAGES = [["semantic", "semantic"], ["coarse", "coarse"], ["fine", "fine"], ["decode", "decode"]];
  const $ = (id) => document.getElementById(id);
  let info = null;
  let history = loadHistory();
  let compare = [];
  let polling = false;

  // ------------------------------------------------------------------------------------ history store
  function loadHistory() {
    try {
      const value = JSON.parse(sessionStorage.getItem(HISTORY_KEY) || "[]");
      return Array.isArray(value) ? value : [];
    } catch (error) {
      return [];
    }
  }

  function saveHistory() {
    sessionStorage.setItem(HISTORY_KEY, JSON.stringify(history.map((h) => ({
      id: h.id, params: h.params, state: h.state, result: h.result, error: h.error, created: h.created,
    }))));
  }

  // --------------------------------------------------------------------------------------- the form
  function storyRow(start = "", text = "") {
    const row = el("div", { class: "story-row" },
      el("input", { type: "number", min: "0", step: "0.5", value: start, placeholder: "s", "aria-label": "start" }),
      el("input", { type: "text", value: text, placeholder: "what plays from here on", "aria-label": "segment" }),
      el("button", { type: "button", text: "Remove", onclick: () => row.remove() }));
    $("story-rows").append(row);
  }

  function storySegments() {
    return [...$("story-rows").querySelectorAll(".story-row")].map((row) => {
      const [start, text] = row.querySelectorAll("input");
      return { start: Number(start.value || 0), text: text.value };
    }).filter((s) => s.text.trim());
  }

  function formData() {
    const data = new FormData();
    const storyOn = $("story-on").checked;
    if (storyOn) data.append("story", JSON.stringify(storySegments()));
    else data.append("prompt", $("prompt").value);
    data.append("duration", $("duration").value);
    for (const name of ["seed", "temperature", "top_k", "top_p", "cfg"]) {
      const value = $(name).value.trim();
      if (value) data.append(name, value);
    }
    if ($("draft").checked) data.append("draft", "true");
    const melody = $("melody").files[0];
    if (melody) data.append("melody", melody, melody.name);
    return data;
  }

  function showError(message, field) {
    $("form-error").textContent = message || "";
    document.querySelectorAll("[aria-invalid]").forEach((node) => node.removeAttribute("aria-invalid"));
    const target = field && $(String(field).split(/[.[]/)[0]);
    if (target) {
      target.setAttribute("aria-invalid", "true");
      const box = target.closest("details");
      if (box) box.open = true;
      target.focus();
    }
  }

  async function submit(event) {
    event.preventDefault();
    showError("");
    const button = $("generate");
    button.disabled = true;
    try {
      const body = await api("/api/generate", { method: "POST", body: formData() });
      const storyOn = $("story-on").checked;
      const entry = {
        id: body.id, state: body.state, created: Date.now(), result: null, error: null,
        params: {
          prompt: storyOn ? null : $("prompt").value.trim(), story: storyOn ? storySegments() : null,
          duration: Number($("duration").value), seed: body.seed,
          temperature: $("temperature").value.trim(), top_k: $("top_k").value.trim(),
          top_p: $("top_p").value.trim(), cfg: $("cfg").value.trim(), draft: $("draft").checked,
        },
      };
      history.unshift(entry);
      saveHistory();
      renderCard(entry);
      poll();
    } catch (error) {
      if (error.status === 429) showError(`The queue is full; try again in ${error.retryAfter || "a few"} s.`);
      else showError(error.message, error.field);
    } finally {
      button.disabled = false;
    }
  }

  function reuse(entry) {
    const p = entry.params;
    $("story-on").checked = Boolean(p.story);
    $("story-rows").replaceChildren();
    if (p.story) {
      $("story-box").open = true;
      p.story.forEach((s) => storyRow(s.start, s.text));
    } else {
      $("prompt").value = p.prompt || "";
    }
    $("duration").value = p.duration;
    $("seed").value = p.seed;
    for (const name of ["temperature", "top_k", "top_p", "cfg"]) $(name).value = p[name] || "";
    $("draft").checked = Boolean(p.draft);
    window.scrollTo({ top: 0, behavior: "smooth" });
  }

  // ------------------------------------------------------------------------------------------- cards
  function title(entry) {
    const p = entry.params || {};
    if (p.story && p.story.length) return p.story.map((s) => `${s.start}s: ${s.text}`).join("  →  ");
    return p.prompt || "(untitled)";
  }

  function metaLine(entry) {
    const p = entry.params || {};
    const parts = [`${p.duration} s`, `seed ${p.seed}`];
    for (const name of ["temperature", "top_k", "top_p", "cfg"]) if (p[name]) parts.push(`${name} ${p[name]}`);
    if (p.draft) parts.push("draft");
    if (entry.result && entry.result.generate_seconds) parts.push(`made in ${seconds(entry.result.generate_seconds)}`);
    return parts.join(" · ");
  }

  function progressBar(fraction) {
    const inner = el("div");
    inner.style.width = `${Math.round(100 * Math.min(Math.max(fraction, 0), 1))}%`;
    return el("div", { class: "progress", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100",
      "aria-valuenow": String(Math.round(100 * fraction)) }, inner);
  }

  function setBar(bar, fraction) {
    const value = Math.round(100 * Math.min(Math.max(fraction, 0), 1));
    bar.firstChild.style.width = `${value}%`;
    bar.setAttribute("aria-valuenow", String(value));
  }

  function renderCard(entry, status = null) {
    const id = `job-${entry.id}`;
    let card = $(id);
    const fresh = !card;
    if (fresh) {
      card = el("article", { class: "card", id, "data-job": entry.id });
      $("history").prepend(card);
    }
    if (entry.state === "done") {
      if (card.dataset.rendered === "done") return card;
      card.dataset.rendered = "done";
      card.replaceChildren(...doneCard(entry));
    } else if (FINISHED.has(entry.state)) {
      card.dataset.rendered = entry.state;
      card.replaceChildren(
        el("h3", {}, title(entry), el("span", { class: `state ${entry.state}`, text: entry.state })),
        el("div", { class: "meta", text: metaLine(entry) }),
        el("div", { class: "error", text: entry.error || (entry.state === "expired" ? "the result has expired" : "") }),
        el("div", { class: "buttons" },
          el("button", { type: "button", text: "Reuse settings", onclick: () => reuse(entry) }),
          el("button", { type: "button", text: "Remove", onclick: () => removeEntry(entry) })));
    } else {
      if (card.dataset.rendered !== "pending") {
        card.dataset.rendered = "pending";
        card.replaceChildren(
          el("h3", {}, title(entry), el("span", { class: "state", "data-part": "state" })),
          el("div", { class: "meta", text: metaLine(entry) }),
          progressBar(0),
          el("div", { class: "stages" }, ...STAGES.map(([key, label]) => el("div", { "data-stage": key },
            el("span", { text: `${label} 0%` }), progressBar(0)))),
          el("div", { class: "eta", "data-part": "eta", text: "waiting for a worker" }),
          el("div", { class: "buttons" }, el("button", { type: "button", text: "Cancel", onclick: () => cancel(entry) })));
      }
      const stages = status ? status.progress.stages : {};
      const fraction = status ? status.progress.fraction : 0;
      const state = card.querySelector("[data-part=state]");
      state.className = `state ${entry.state}`;
      state.textContent = entry.state;
      setBar(card.querySelector(":scope > .progress"), fraction);
      for (const [key, label] of STAGES) {
        const s = stages[key] || { done: 0, total: 0 };
        const box = card.querySelector(`[data-stage=${key}]`);
        const part = s.total ? s.done / s.total : 0;
        box.querySelector("span").textContent = `${label} ${Math.round(100 * part)}%`;
        setBar(box.querySelector(".progress"), part);
      }
      let eta = "waiting for a worker";
      if (status && status.state === "queued") {
        eta = `queued (position ${status.queue_position + 1})` +
          (status.eta_seconds !== null ? `, about ${seconds(status.eta_seconds)}` : "");
      } else if (status && status.state === "running") {
        eta = status.eta_seconds !== null ? `about ${seconds(status.eta_seconds)} left` : "estimating…";
      }
      card.querySelector("[data-part=eta]").textContent = eta;
    }
    return card;
  }

  function doneCard(entry) {
    const audioUrl = `/api/jobs/${entry.id}/audio`;
    const audio = el("audio", { controls: true, preload: "auto", src: audioUrl });
    const canvas = el("canvas", { class: "wave", width: "800", height: "64", title: "click to seek" });
    const spec = el("img", { class: "spec", alt: "log-mel spectrogram", loading: "lazy",
      src: `/api/jobs/${entry.id}/spectrogram.png` });
    const compareBox = el("input", { type: "checkbox", checked: compare.includes(entry.id) });
    compareBox.addEventListener("change", () => toggleCompare(entry, compareBox.checked));
    drawWaveform(canvas, audio, audioUrl);
    return [
      el("h3", {}, title(entry), el("span", { class: "state done", text: "done" })),
      el("div", { class: "meta", text: metaLine(entry) }),
      audio,
      el("div", { class: "visuals" }, canvas, spec),
      el("div", { class: "buttons" },
        el("a", { class: "button", href: `${audioUrl}?download=1`, download: "", text: "Download WAV" }),
        el("a", { class: "button", href: `/api/jobs/${entry.id}/spectrogram.png`, download: "", text: "Spectrogram PNG" }),
        el("label", { class: "button" }, compareBox, " Compare"),
        el("button", { type: "button", text: "Reuse settings", onclick: () => reuse(entry) }),
        el("button", { type: "button", text: "Remove", onclick: () => removeEntry(entry) })),
    ];
  }

  async function drawWaveform(canvas, audio, url) {
    let peaks = null;
    try {
      const buffer = await (await fetch(url)).arrayBuffer();
      const context = new OfflineAudioContext(1, 1, 24000);
      const decoded = await context.decodeAudioData(buffer);
      const data = decoded.getChannelData(0);
      const columns = canvas.width;
      const step = Math.max(1, Math.floor(data.length / columns));
      peaks = new Float32Array(columns * 2);
      let top = 1e-9;
      for (let c = 0; c < columns; c++) {
        let lo = 0;
        let hi = 0;
        for (let i = c * step; i < Math.min((c + 1) * step, data.length); i++) {
          if (data[i] < lo) lo = data[i];
          if (data[i] > hi) hi = data[i];
        }
        peaks[2 * c] = lo;
        peaks[2 * c + 1] = hi;
        top = Math.max(top, -lo, hi);
      }
      for (let i = 0; i < peaks.length; i++) peaks[i] /= top;  // normalised so quiet output is visible
    } catch (error) {
      peaks = null;
    }
    const draw = () => {
      const g = canvas.getContext("2d");
      const { width, height } = canvas;
      g.clearRect(0, 0, width, height);
      const played = audio.duration ? audio.currentTime / audio.duration : 0;
      if (peaks) {
        for (let c = 0; c < width; c++) {
          g.fillStyle = c / width <= played ? "#5b4bdb" : "#b8b1f0";
          const y0 = (1 - peaks[2 * c + 1]) * (height / 2);
          const y1 = (1 - peaks[2 * c]) * (height / 2);
          g.fillRect(c, y0, 1, Math.max(1, y1 - y0));
        }
      } else {
        g.fillStyle = "#6b6b78";
        g.fillText("waveform unavailable", 8, height / 2);
      }
    };
    const loop = () => { draw(); if (!audio.paused) requestAnimationFrame(loop); };
    audio.addEventListener("play", loop);
    audio.addEventListener("seeked", draw);
    audio.addEventListener("timeupdate", draw);
    canvas.addEventListener("click", (event) => {
      if (!audio.duration) return;
      const box = canvas.getBoundingClientRect();
      audio.currentTime = ((event.clientX - box.left) / box.width) * audio.duration;
    });
    draw();
  }

  // --------------------------------------------------------------------------------------- compare
  function toggleCompare(entry, on) {
    compare = compare.filter((id) => id !== entry.id);
    if (on) compare.push(entry.id);
    if (compare.length > 2) compare = compare.slice(-2);
    renderCompare();
  }

  function renderCompare() {
    const area = $("compare");
    const slots = [0, 1].map((i) => {
      const entry = history.find((h) => h.id === compare[i]);
      if (!entry) return el("div", { class: "empty", text: i === 0 ? "Tick \"Compare\" on two generations to hear " +
        "them side by side." : "Pick a second one." });
      return el("div", { class: "card" },
        el("h3", { text: `${i === 0 ? "A" : "B"}: ${title(entry)}` }),
        el("div", { class: "meta", text: metaLine(entry) }),
        el("audio", { controls: true, preload: "metadata", src: `/api/jobs/${entry.id}/audio` }),
        el("img", { class: "spec", alt: "spectrogram", src: `/api/jobs/${entry.id}/spectrogram.png` }));
    });
    area.replaceChildren(...slots);
    document.querySelectorAll(".card[data-job]").forEach((card) => {
      card.classList.toggle("selected", compare.includes(card.dataset.job));
      const box = card.querySelector(".buttons input[type=checkbox]");
      if (box) box.checked = compare.includes(card.dataset.job);
    });
  }

  // ------------------------------------------------------------------------------------ job control
  async function cancel(entry) {
    try {
      const status = await api(`/api/jobs/${entry.id}`, { method: "DELETE" });
      entry.state = status.state;
      saveHistory();
      renderCard(entry, status);
      poll();
    } catch (error) {
      showError(error.message);
    }
  }

  async function removeEntry(entry) {
    if (!FINISHED.has(entry.state)) await cancel(entry);
    history = history.filter((h) => h.id !== entry.id);
    compare = compare.filter((id) => id !== entry.id);
    saveHistory();
    const card = $(`job-${entry.id}`);
    if (card) card.remove();
    renderCompare();
  }

  async function poll() {
    if (polling) return;
    polling = true;
    try {
      while (true) {
        const pending = history.filter((h) => !FINISHED.has(h.state));
        if (!pending.length) break;
        await Promise.all(pending.map(async (entry) => {
          try {
            const status = await api(`/api/jobs/${entry.id}`);
            entry.state = status.state;
            entry.result = status.result;
            entry.error = status.error;
            if (status.params) entry.params.seed = status.params.seed;
            renderCard(entry, status);
          } catch (error) {
            if (error.status === 404) {
              entry.state = "expired";
              renderCard(entry);
            }
          }
        }));
        saveHistory();
        $("queue-note").textContent = "";
        await new Promise((resolve) => setTimeout(resolve, 350));
      }
    } finally {
      polling = false;
    }
  }

  async function restore() {
    for (const entry of [...history].reverse()) {
      if (entry.state === "done") {
        try {
          await api(`/api/jobs/${entry.id}`);
        } catch (error) {
          if (error.status === 404) entry.state = "expired";
        }
      }
      renderCard(entry);
    }
    saveHistory();
    renderCompare();
    poll();
  }

  // ------------------------------------------------------------------------------------------ setup
  async function setup() {
    info = await api("/api/info");
    $("model-name").textContent = info.model ? `model: ${info.model}` : "model: (in memory)";
    $("duration").max = info.limits.max_duration;
    $("prompt").maxLength = info.limits.max_prompt_chars;
    $("examples").replaceChildren(...info.examples.map((text) => el("button", {
      type: "button", class: "chip", title: text, text: shorten(text),
      onclick: () => { $("prompt").value = text; $("story-on").checked = false; $("prompt").focus(); updateCount(); },
    })));
    const d = info.defaults || {};
    if (d.semantic) {
      const three = (key) => ["semantic", "coarse", "fine"].map((s) => d[s][key] ?? "off").join(",");
      $("temperature").placeholder = three("temperature");
      $("top_k").placeholder = three("top_k");
      $("top_p").placeholder = three("top_p");
      $("cfg").placeholder = three("cfg");
    }
    $("melody-note").textContent = info.melody ? `Up to ${info.limits.max_melody_seconds} s.` :
      `Note: ${info.melody_note}; a melody upload will be refused.`;
    $("queue-note").textContent = `${info.workers} worker(s), queue of ${info.limits.max_queue}`;
  }

  function shorten(text, words = 6) {
    const parts = text.split(/\s+/);
    return parts.length > words ? `${parts.slice(0, words).join(" ")}…` : text;
  }

  function updateCount() {
    const limit = info ? info.limits.max_prompt_chars : 0;
    $("prompt-count").textContent = limit ? `${$("prompt").value.length} / ${limit} characters` : "";
  }

  document.addEventListener("DOMContentLoaded", async () => {
    $("generate-form").addEventListener("submit", submit);
    $("prompt").addEventListener("input", updateCount);
    $("prompt").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) $("generate-form").requestSubmit();
    });
    $("seed-random").addEventListener("click", () => {
      $("seed").value = crypto.getRandomValues(new Uint32Array(1))[0] >>> 1;
    });
    $("story-add").addEventListener("click", () => storyRow());
    $("clear-history").addEventListener("click", () => {
      history.filter((h) => !FINISHED.has(h.state)).forEach(cancel);
      history = [];
      compare = [];
      saveHistory();
      $("history").replaceChildren();
      renderCompare();
    });
    storyRow(0, "a calm piano intro");
    storyRow(5, "the drums and bass come in");
    try {
      await setup();
      updateCount();
    } catch (error) {
      showError(`The server did not answer: ${error.message}`);
    }
    restore();
  });
})();
