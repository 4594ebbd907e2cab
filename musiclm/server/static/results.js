// The listening-test results page: wins per system and pairwise Wilcoxon signed-rank tests.
"use strict";

(() => {
  const { api, el, query } = musiclm;
  const $ = (id) => document.getElementById(id);
  const fmt = (v, digits = 3) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));

  function row(cells, header = false) {
    return el("tr", {}, ...cells.map((c) => {
      const cell = el(header ? "th" : "td", typeof c === "object" && c !== null && !(c instanceof Node) ? c.attrs : {},
        c instanceof Node ? c : (typeof c === "object" && c !== null ? c.value : c));
      return cell;
    }));
  }

  async function show(name) {
    $("error").textContent = "";
    const base = `/api/listen/tests/${encodeURIComponent(name)}`;
    $("csv").href = `${base}/ratings.csv`;
    $("listen-link").href = `/listen?test=${encodeURIComponent(name)}`;
    history.replaceState(null, "", `/listen/results?test=${encodeURIComponent(name)}`);
    try {
      const r = await api(`${base}/results`);
      $("summary").textContent = `${r.ratings} ratings from ${r.raters} rater(s).`;
      const best = Math.max(1e-9, ...r.systems.map((s) => s.win_rate || 0));
      $("systems").replaceChildren(
        row(["system", "wins", "losses", "ties", "win rate", ""], true),
        ...r.systems.map((s) => {
          const bar = el("div", { class: "bar" });
          bar.style.width = `${Math.round(100 * (s.win_rate || 0) / best)}%`;
          return row([s.system, { value: s.wins, attrs: { class: "num" } }, { value: s.losses, attrs: { class: "num" } },
            { value: s.ties, attrs: { class: "num" } }, { value: fmt(s.win_rate), attrs: { class: "num" } }, bar]);
        }));
      $("pairs").replaceChildren(
        row(["X", "Y", "ratings", "X wins", "Y wins", "ties", "mean pref. X", "W", "p"], true),
        ...r.pairs.map((p) => row([p.system_x, p.system_y, { value: p.n, attrs: { class: "num" } },
          { value: p.x_wins, attrs: { class: "num" } }, { value: p.y_wins, attrs: { class: "num" } },
          { value: p.ties, attrs: { class: "num" } }, { value: fmt(p.mean_preference_x, 2), attrs: { class: "num" } },
          { value: fmt(p.wilcoxon_statistic, 1), attrs: { class: "num" } },
          { value: fmt(p.p_value, 4), attrs: { class: p.p_value !== null && p.p_value < 0.05 ? "num significant" : "num" } },
        ])));
    } catch (error) {
      $("error").textContent = error.message;
    }
  }

  document.addEventListener("DOMContentLoaded", async () => {
    try {
      const tests = await api("/api/listen/tests");
      $("test").replaceChildren(...tests.map((t) => el("option", { value: t.name,
        text: `${t.name} (${t.ratings} ratings)` })));
      if (!tests.length) {
        $("error").textContent = "There is no listening test yet: create one with `musiclm listen create`.";
        return;
      }
      const wanted = query("test");
      if (wanted && tests.some((t) => t.name === wanted)) $("test").value = wanted;
      $("test").addEventListener("change", () => show($("test").value));
      show($("test").value);
    } catch (error) {
      $("error").textContent = error.message;
    }
  });
})();
