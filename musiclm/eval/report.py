"""The evaluation report: ``report.json`` (everything), ``report.md`` (tables per metric and system) and plots.

Plots (matplotlib, Agg backend) go to ``plots/``: ``metrics.png`` (one bar chart per headline metric, a bar per
system), ``tempo.png`` (requested vs measured tempo per clip, with the ±8 % band and the half/double-tempo lines)
and ``spectrogram-<prompt>-<system>.png`` for the first few prompts (:func:`musiclm.plots.save_spectrogram`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from musiclm.eval.prompts import Prompt
from musiclm.fileio import atomic_write_text

PLOTS_DIR = "plots"
HEADLINES: tuple[tuple[str, str, str], ...] = (
    # (key, label, better)
    ("fad.tagger", "FAD (tagger)", "lower"),
    ("fad.mulan", "FAD (MuLan)", "lower"),
    ("fad.vggish", "FAD (VGGish)", "lower"),
    ("kld.mean", "KLD (tagger, mean over heads)", "lower"),
    ("mcc", "MCC (MuLan text-audio cosine)", "higher"),
    ("adherence.tempo.accuracy", "tempo within ±8 %", "higher"),
    ("adherence.mode.accuracy", "mode (major/minor) matches", "higher"),
    ("adherence.genre.accuracy", "genre (tagger top-1) matches", "higher"),
    ("adherence.instruments.f1", "instrument families F1 (tagger)", "higher"),
)


def lookup(metrics: dict[str, Any], dotted: str) -> float | None:
    """``metrics["a"]["b"]`` for ``"a.b"``; None when absent or not a finite number."""
    value: Any = metrics
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(float(value)):
        return None
    return float(value)


def fmt(value: Any, digits: int = 3) -> str:
    """A number for a table: 3 significant digits, ``-`` for missing."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "-"
        if value == 0:
            return "0"
        if abs(value) >= 1000:
            return f"{value:.0f}"
        return f"{value:.{digits}g}"
    return str(value)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


# ---------------------------------------------------------------------------------------------- markdown
def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def markdown(report: dict[str, Any], plots: dict[str, str] | None = None) -> str:
    """The report as Markdown: settings, then one table per metric family, then notes and plots."""
    systems: dict[str, Any] = report["systems"]
    settings, prompts, timings = report["settings"], report["prompts"], report["timings"]
    evaluators = report["evaluators"]
    lines = ["# Evaluation report", ""]
    if settings.get("command"):
        lines += ["```bash", settings["command"], "```", ""]
    lines += [f"- prompts: {prompts['count']} of {prompts['available']} ({prompts['kind']}: {prompts['source']}; "
              f"seed {prompts['seed']})",
              f"- reference set: {prompts['reference_set']} ({prompts['reference_count']} clips)",
              f"- duration {fmt(settings['duration'])} s; MuLan {evaluators['mulan']}; tagger "
              f"{evaluators['tagger'] or 'none'}; VGGish {'yes' if evaluators['vggish'] else 'no'}",
              f"- musiclm {report['musiclm_version']}, {report['created']}; this run took "
              f"{fmt(timings['total_seconds'] / 60)} min (rendering {fmt(timings['render_seconds'])} s, measuring "
              f"{fmt(timings['measure_seconds'])} s, memorisation {fmt(timings['memorization_seconds'])} s; clips "
              "cached by earlier runs are not rendered again)"]
    if settings.get("retrieval_library_seconds") is not None:
        lines.append(f"- retrieval library: {report['systems'].get('retrieval', {}).get('library', '')}; embedded or "
                     f"loaded from its cache in {fmt(settings['retrieval_library_seconds'])} s before that")
    lines.append("")
    lines += ["## Systems", ""]
    lines += _table(["system", "what it is", "clips", "rendered / cached this run", "s per clip", "RTF"],
                    [[name, s["description"], str(s["clips"]), f"{s['rendered']} / {s['cached']}",
                      fmt(s["render_seconds_per_clip"]), fmt(s["render_rtf"])] for name, s in systems.items()])
    lines += ["", "s per clip and RTF (seconds per second of audio) are the mean rendering time over every clip, "
              "whichever run made it (for reference and retrieval: reading files).", ""]

    names = list(systems)
    fad_keys = report["evaluators"]["fad_embeddings"]
    lines += ["## FAD (lower is better)", ""]
    lines += _table(["system", *[f"FAD {k}" for k in fad_keys]],
                    [[n, *[fmt(lookup(systems[n]["metrics"], f"fad.{k}")) for k in fad_keys]] for n in names])
    failures = [f"- {n}, FAD {k}: {reason}" for n in names
                for k, reason in (systems[n]["metrics"]["fad"].get("errors") or {}).items()]
    lines += ["", *failures, ""] if failures else [""]

    kld_heads = sorted({h for n in names for h in (systems[n]["metrics"].get("kld") or {}) if h != "mean"})
    lines += ["## KLD (tagger label distributions, generated vs reference; lower is better)", ""]
    if kld_heads:
        lines += _table(["system", "mean", *kld_heads],
                        [[n, fmt(lookup(systems[n]["metrics"], "kld.mean")),
                          *[fmt(lookup(systems[n]["metrics"], f"kld.{h}")) for h in kld_heads]] for n in names])
    else:
        lines += ["Not measured (needs per-prompt reference clips and a tagger)."]
    lines += ["", "## MCC (MuLan text-audio cosine; higher is better)", ""]
    lines += _table(["system", "MCC", "silent clips"],
                    [[n, fmt(systems[n]["metrics"]["mcc"]), str(systems[n]["metrics"]["silent_clips"])]
                     for n in names])
    lines += ["", "## Attribute adherence (against the prompt's labels)", ""]
    if any(systems[n]["metrics"]["adherence"] for n in names):
        rows = []
        for n in names:
            a = systems[n]["metrics"]["adherence"]
            tempo, mode = a.get("tempo") or {}, a.get("mode") or {}
            rows.append([n, _pct(tempo.get("accuracy")), _pct(tempo.get("octave_error_rate")),
                         f"{tempo.get('half', 0)} / {tempo.get('double', 0)}" if tempo else "-",
                         _pct(tempo.get("accuracy_with_octaves")), fmt(tempo.get("median_abs_error_of_matches")),
                         _pct(mode.get("accuracy")), _pct((mode.get("key") or {}).get("exact")),
                         _pct(lookup(a, "genre.accuracy")), fmt(lookup(a, "instruments.precision")),
                         fmt(lookup(a, "instruments.recall")), fmt(lookup(a, "instruments.f1"))])
        lines += _table(["system", "tempo ±8 %", "octave errors", "half / double", "tempo incl. octaves",
                         "median rel. error (matches)", "mode", "key exact", "genre", "instr. precision",
                         "instr. recall", "instr. F1"], rows)
        first = systems[names[0]]["metrics"]["adherence"]
        counts = [f"tempo {first['tempo']['count']:.0f}" if "tempo" in first else "",
                  f"mode {first['mode']['count']}" if "mode" in first else "",
                  f"genre {first['genre']['count']} (chance {_pct(first['genre']['chance'])})" if "genre" in first
                  else "", f"instruments {first['instruments']['count']}" if "instruments" in first else ""]
        lines += ["", "Prompts with that label: " + ", ".join(c for c in counts if c) + "."]
    else:
        lines += ["Not measured (the prompts carry no labels)."]
    melody = [(n, systems[n]["metrics"].get("melody")) for n in names]
    lines += ["", "## Melody (chroma cosine)", ""]
    if any(m for _, m in melody):
        lines += _table(["system", "chroma cosine", "prompts"],
                        [[n, fmt((m or {}).get("chroma_cosine")), str((m or {}).get("count", 0))] for n, m in melody])
    else:
        lines += ["Not measured: no prompt carries a melody."]
    lines += ["", "## Memorisation (semantic stage, greedy continuation of training prompts)", ""]
    memo = report.get("memorization")
    if memo and "skipped" not in memo:
        lines += _table(["sequences", "prompt / continuation (s)", "exact", "approximate (cost < "
                         f"{fmt(memo['threshold'])})", "calibrated (cost < 1 % chance quantile)",
                         "chance (unrelated pairs)", "median cost", "median chance cost"],
                        [[str(memo["sequences"]),
                          f"{fmt(memo['prompt_seconds'])} / {fmt(memo['continuation_seconds'])}",
                          _pct(memo["exact_rate"]), _pct(memo["approximate_rate"]), _pct(memo["calibrated_rate"]),
                          _pct(memo["chance_rate"]), fmt(memo["median_cost"]), fmt(memo["median_chance_cost"])]])
        if not memo.get("store_mulan_matches_model", True):
            lines += ["", "The token store's MuLan differs from the model's: the conditioning tokens are the store's."]
    else:
        lines += [f"Not measured: {memo['skipped'] if memo else 'no token store given (--tokens DIR)'}."]
    if report.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in report["notes"]]
    if plots:
        lines += ["", "## Plots", ""]
        for key, label in (("metrics", "Headline metrics per system"), ("tempo", "Requested vs measured tempo")):
            if key in plots:
                lines += [f"![{label}]({plots[key]})", ""]
        spectra = [k for k in plots if k.startswith("spectrogram:")]
        if spectra:
            lines += ["Spectrograms:", ""]
            for key in spectra:
                _, prompt_id, system = key.split(":", 2)
                lines += [f"- {prompt_id}, {system}: ![{system}]({plots[key]})"]
    return "\n".join(lines).rstrip() + "\n"


# ------------------------------------------------------------------------------------------------- plots
def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_metrics(report: dict[str, Any], path: Path) -> Path | None:
    """One bar chart per headline metric that any system has, a bar per system."""
    systems = report["systems"]
    panels = []
    for key, label, better in HEADLINES:
        values = {n: lookup(s["metrics"], key) for n, s in systems.items()}
        if any(v is not None for v in values.values()):
            panels.append((label, better, values))
    if not panels:
        return None
    plt = _pyplot()
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), dpi=100, squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    try:
        for ax, (label, better, values) in zip(axes.flat, panels):
            names = list(values)
            heights = [values[n] if values[n] is not None else 0.0 for n in names]
            bars = ax.bar(range(len(names)), heights, color=[colors[i % len(colors)] for i in range(len(names))])
            for bar, name in zip(bars, names):
                if values[name] is None:
                    bar.set_hatch("//")
                    bar.set_alpha(0.2)
                else:
                    ax.annotate(fmt(values[name]), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                                ha="center", va="bottom", fontsize=7)
            ax.set_xticks(range(len(names)))
            ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
            ax.set_title(f"{label} ({better} is better)", fontsize=9)
        for ax in list(axes.flat)[len(panels):]:
            ax.axis("off")
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def plot_tempo(report: dict[str, Any], path: Path, tolerance: float = 0.08) -> Path | None:
    """Requested vs measured BPM of every clip, per system, with the ±tolerance band and octave lines."""
    series = {}
    for name, system in report["systems"].items():
        pairs = [(r["requested_bpm"], r["measured_bpm"]) for r in system["per_clip"] if "requested_bpm" in r]
        if pairs:
            series[name] = np.array(pairs, dtype=float)
    if not series:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 5.2), dpi=100)
    try:
        top = max(float(max(p[:, 0].max(), p[:, 1].max())) for p in series.values()) * 1.1
        grid = np.linspace(1.0, max(top, 10.0), 200)
        ax.fill_between(grid, grid * (1 - tolerance), grid * (1 + tolerance), color="0.85", label=f"±{tolerance:.0%}")
        ax.plot(grid, grid, color="0.4", lw=0.8)
        ax.plot(grid, grid / 2, color="0.6", lw=0.8, ls="--", label="half / double tempo")
        ax.plot(grid, grid * 2, color="0.6", lw=0.8, ls="--")
        markers = "os^Dv<>"
        for i, (name, pairs) in enumerate(series.items()):
            jitter = 1.0 + 0.004 * (i - len(series) / 2)
            ax.scatter(pairs[:, 0] * jitter, pairs[:, 1], s=14, alpha=0.7, marker=markers[i % len(markers)],
                       label=name)
        ax.set_xlim(0, max(top, 10.0))
        ax.set_ylim(0, max(top, 10.0) * 1.2)
        ax.set_xlabel("requested tempo (BPM, prompt label)")
        ax.set_ylabel("measured tempo (BPM, beat tracking)")
        ax.legend(fontsize=8, loc="upper left")
        ax.set_title("Requested vs measured tempo", fontsize=10)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def plot_spectrograms(report: dict[str, Any], out: Path, prompts: Sequence[Prompt], count: int) -> dict[str, str]:
    """Spectrograms of every system's clip for the first ``count`` prompts; ``{"spectrogram:<id>:<system>":
    relative path}``."""
    from musiclm import SAMPLE_RATE
    from musiclm.eval.suite import clip_path
    from musiclm.eval.systems import load_clip_audio
    from musiclm.plots import save_spectrogram

    written: dict[str, str] = {}
    for prompt in list(prompts)[: max(0, count)]:
        for name in report["systems"]:
            source = clip_path(out, name, prompt.id)
            if not source.exists():
                continue
            target = out / PLOTS_DIR / f"spectrogram-{prompt.id}-{name}.png"
            title = f"{name}: {prompt.text}"
            save_spectrogram(target, load_clip_audio(source), SAMPLE_RATE, title=title)
            written[f"spectrogram:{prompt.id}:{name}"] = str(target.relative_to(out))
    return written


def write_report(report: dict[str, Any], out: str | Path, prompts: Sequence[Prompt] = (),
                 spectrograms: int = 3) -> dict[str, str]:
    """Write plots, ``report.json`` and ``report.md`` into ``out``; returns ``{name: path}``."""
    out = Path(out)
    plots: dict[str, str] = {}
    metrics_png = plot_metrics(report, out / PLOTS_DIR / "metrics.png")
    if metrics_png is not None:
        plots["metrics"] = str(metrics_png.relative_to(out))
    tempo_png = plot_tempo(report, out / PLOTS_DIR / "tempo.png")
    if tempo_png is not None:
        plots["tempo"] = str(tempo_png.relative_to(out))
    plots.update(plot_spectrograms(report, out, prompts, spectrograms))
    report["plots"] = plots
    text = json.dumps(finite(report), indent=1, default=_json_default, allow_nan=False)
    json_path = atomic_write_text(out / "report.json", text + "\n")
    md_path = atomic_write_text(out / "report.md", markdown(report, plots))
    return {"json": str(json_path), "markdown": str(md_path), **{k: str(out / v) for k, v in plots.items()}}


def finite(value: Any) -> Any:
    """A copy of a JSON-like value with NaN and infinities replaced by None (strict JSON has neither)."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    if isinstance(value, float | np.floating) and not math.isfinite(float(value)):
        return None
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def summary(report: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """The headline metrics per system (what the CLI prints)."""
    return {name: {label: lookup(s["metrics"], key) for key, label, _ in HEADLINES
                   if lookup(s["metrics"], key) is not None}
            for name, s in report["systems"].items()}
