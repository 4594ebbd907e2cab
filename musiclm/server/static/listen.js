// The listening-test page: blind A-vs-B pairs for a caption, answered on a 5-point scale.
"use strict";

(() => {
  const { api, el, query } = musiclm;
  const $ = (id) => document.getElementById(id);
  const RATER_KEY = "musiclm-rater";
  let pair = null;
  let shownAt = 0;
  let played = { a: false, b: false };

  function testName() {
    return $("test").value;
  }

  function setEnabled() {
    const ready = Boolean(pair) && played.a && played.b;
    $("scale").querySelectorAll("button").forEach((b) => { b.disabled = !ready; });
    $("listen-hint").hidden = ready;
  }

  async function next() {
    $("rating-error").textContent = "";
    const rater = encodeURIComponent($("rater").value.trim());
    pair = await api(`/api/listen/tests/${encodeURIComponent(testName())}/next?rater=${rater}`);
    if (pair.done) {
      $("rating").hidden = true;
      $("finished").hidden = false;
      $("finished-results").href = `/listen/results?test=${encodeURIComponent(testName())}`;
      pair = null;
      return;
    }
    played = { a: false, b: false };
    $("caption").textContent = pair.prompt.caption;
    $("counter").textContent = `pair ${pair.rated + 1} of ${pair.total}`;
    $("clip-a").src = pair.a.url;
    $("clip-b").src = pair.b.url;
    shownAt = performance.now();
    setEnabled();
  }

  async function answer(score) {
    if (!pair || !(played.a && played.b)) return;
    const body = {
      rater: $("rater").value.trim(), a: pair.a.clip, b: pair.b.clip, score,
      elapsed_ms: Math.round(performance.now() - shownAt),
    };
    $("scale").querySelectorAll("button").forEach((b) => { b.disabled = true; });
    try {
      await api(`/api/listen/tests/${encodeURIComponent(testName())}/ratings`, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      });
      $("clip-a").pause();
      $("clip-b").pause();
      await next();
    } catch (error) {
      $("rating-error").textContent = error.message;
      setEnabled();
    }
  }

  async function start() {
    $("choose-error").textContent = "";
    const rater = $("rater").value.trim();
    if (!rater) {
      $("choose-error").textContent = "Enter your name or rater id first.";
      $("rater").focus();
      return;
    }
    if (!testName()) {
      $("choose-error").textContent = "There is no listening test yet: create one with `musiclm listen create`.";
      return;
    }
    localStorage.setItem(RATER_KEY, rater);
    $("results-link").href = `/listen/results?test=${encodeURIComponent(testName())}`;
    try {
      $("rating").hidden = false;
      $("finished").hidden = true;
      await next();
    } catch (error) {
      $("rating").hidden = true;
      $("choose-error").textContent = error.message;
    }
  }

  document.addEventListener("DOMContentLoaded", async () => {
    $("rater").value = localStorage.getItem(RATER_KEY) || "";
    $("clip-a").addEventListener("play", () => { played.a = true; setEnabled(); });
    $("clip-b").addEventListener("play", () => { played.b = true; setEnabled(); });
    // one clip at a time
    $("clip-a").addEventListener("play", () => $("clip-b").pause());
    $("clip-b").addEventListener("play", () => $("clip-a").pause());
    $("scale").querySelectorAll("button").forEach((button) => {
      button.addEventListener("click", () => answer(Number(button.dataset.score)));
    });
    document.addEventListener("keydown", (event) => {
      if (event.target.tagName === "INPUT" || !/^[1-5]$/.test(event.key)) return;
      answer(Number(event.key) - 3);
    });
    $("start").addEventListener("click", start);
    try {
      const tests = await api("/api/listen/tests");
      $("test").replaceChildren(...tests.map((t) => el("option", { value: t.name,
        text: `${t.name} (${t.prompts} prompts, ${t.systems} systems)` })));
      const wanted = query("test");
      if (wanted && tests.some((t) => t.name === wanted)) $("test").value = wanted;
      if (!tests.length) $("choose-error").textContent = "There is no listening test yet: create one with " +
        "`musiclm listen create`.";
    } catch (error) {
      $("choose-error").textContent = error.message;
    }
    setEnabled();
  });
})();
