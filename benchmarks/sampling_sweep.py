"""MuLan text-audio similarity (MCC) of generated music under several sampling settings, on the same captions.

    python benchmarks/sampling_sweep.py --model musiclm/pretrained --prompts corpora/synth --n 32 \\
        --setting "" --setting "cfg=5" --setting "temperature=0.9,0.8,0.4;cfg=5" [--resynthesize] [--json]

Each ``--setting`` is ``key=value`` pairs joined by ``;`` with the keys of ``musiclm generate`` (``temperature``,
``top_k``, ``top_p``, ``cfg``), one value for every stage or three comma-separated (semantic, coarse, fine), and
``best_of`` (one value: generate that many candidates per caption and keep the one MuLan puts closest to it;
the score is then MuLan judging its own pick, so it is no independent measure); the empty setting is the
model's defaults. Every setting generates the same test captions of the corpus with the same seeds, so the
settings are compared pairwise: the report gives each one's MCC, its share of the real clips' MCC, and its
mean per-caption difference from the first setting with a paired t-test.
``--resynthesize`` adds the acoustic stages rendering each real clip's own semantic tokens with its caption
(a perfect semantic stage): how much of the gap to real clips the semantic stage leaves.
``--keep-levels K`` (repeatable) adds the same with the clip's own first K coarse RVQ levels kept and only the
levels above sampled: how much each coarse level's sampling costs (K = all coarse levels: the fine stage alone).
These rows run under every ``--setting`` (named ``row [setting]`` for a setting other than the defaults), so
``--keep-levels 2 --setting "" --setting "temperature=1,0.5,0.4"`` shows what a lower coarse temperature does
to the levels above the second alone.
``--baseline REPORT`` pairs every row with the same-named row of an earlier ``--json`` report of another model
(same captions and seeds; the report keeps each caption's score): the comparison of two candidate models.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.stats
import soundfile
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from semantic_ablation import corpus_prompts

from musiclm.pipeline import MusicLM

KEYS = {"temperature": float, "top_k": int, "top_p": float, "cfg": float, "best_of": int}
SINGLE_VALUED = {"best_of"}  # one value for the whole pipeline, not one per stage


def parse_setting(spec: str) -> dict[str, float | list[float]]:
    """``"temperature=0.9,0.8,0.4;cfg=5"`` -> ``{"temperature": [0.9, 0.8, 0.4], "cfg": 5.0}``."""
    out: dict[str, float | list[float]] = {}
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        key, sep, value = part.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in KEYS:
            raise SystemExit(f"bad setting {part!r}: use {', '.join(KEYS)} as key=value")
        values = [KEYS[key](v) for v in value.split(",")]
        if len(values) not in ((1,) if key in SINGLE_VALUED else (1, 3)):
            raise SystemExit(f"bad setting {part!r}: " + ("one value" if key in SINGLE_VALUED
                                                           else "one value or three (semantic, coarse, fine)"))
        out[key] = values[0] if len(values) == 1 else values
    return out


def scored(model: MusicLM, texts: list[str], batch: int, seeds: list[int],
           render: Callable[[slice, int], torch.Tensor], save: Path | None = None) -> np.ndarray:
    """Per-caption MCC (:meth:`MusicLM.mulan_similarity`) of ``render(captions, seed)`` averaged over ``seeds``;
    with ``save``, every clip is also written there as a WAV."""
    scores = np.zeros(len(texts))
    for seed in seeds:
        for start in range(0, len(texts), batch):
            rows = slice(start, min(start + batch, len(texts)))
            audio = render(rows, seed)
            scores[rows] += model.mulan_similarity(audio, texts[rows]).numpy()
            if save is not None:
                save.mkdir(parents=True, exist_ok=True)
                for i, clip in enumerate(audio.numpy()):
                    soundfile.write(save / f"caption{start + i:03d}-seed{seed}.wav", clip, model.sample_rate)
    return scores / len(seeds)


def generated(model: MusicLM, texts: list[str], duration: float, setting: dict) -> Callable:
    """Render: the captions generated with ``setting``."""
    return lambda rows, seed: model.generate(texts[rows], duration=duration, seed=seed, **setting)[0]


def resynthesized(model: MusicLM, texts: list[str], real: list[np.ndarray], duration: float,
                  keep_levels: int = 0, setting: dict | None = None) -> Callable:
    """Render: each real clip's own semantic tokens (and first ``keep_levels`` coarse levels) through the
    acoustic stages, with its caption, sampled with ``setting``."""
    def render(rows: slice, seed: int) -> torch.Tensor:
        wavs = real[rows]
        stacked = np.stack([w[:min(len(w) for w in wavs)] for w in wavs])
        return model.resynthesize(stacked, model.sample_rate, texts[rows], duration, seed=seed,
                                  keep_levels=keep_levels, **(setting or {}))[0]
    return render


def paired(scores, base) -> tuple[float, float]:
    """Mean per-caption difference of ``scores`` from ``base`` and its paired t-test p (1 when identical)."""
    diff = np.asarray(scores) - np.asarray(base)
    return float(diff.mean()), float(scipy.stats.ttest_rel(scores, base).pvalue) if np.any(diff) else 1.0


def check_baseline(baseline: dict, captions: list[str], seeds: list[int]) -> None:
    """Refuse a baseline report made on other captions or seeds: its rows could not be paired."""
    for key, ours in (("captions", captions), ("seeds", seeds)):
        if baseline.get(key) != ours:
            raise SystemExit(f"--baseline: that report has other {key}; run both with the same --prompts, "
                             "--n, --seeds and --first-seed")


def compare_to_baseline(report: dict, baseline: dict) -> None:
    """Add to each row of ``report`` its mean per-caption difference from the same-named row of ``baseline``
    (another model's report on the same captions and seeds) with a paired t-test."""
    check_baseline(baseline, report["captions"], report["seeds"])
    for name, row in report["settings"].items():
        base = baseline["settings"].get(name, {}).get("per_caption")
        if base is None:
            continue
        row["vs_baseline"], row["p_vs_baseline"] = paired(row["per_caption"], base)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--prompts", required=True, help="corpus folder (test split captions and clips)")
    parser.add_argument("--setting", action="append", default=[], help="sampling setting (repeatable)")
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--seeds", type=int, default=1, help="how many seeds per caption")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds run from this one up")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--resynthesize", action="store_true",
                        help="also render each real clip's own semantic tokens through the acoustic stages")
    parser.add_argument("--keep-levels", type=int, action="append", default=[],
                        help="also resynthesize keeping each clip's own first K coarse levels (repeatable)")
    parser.add_argument("--save", type=Path, help="write every generated clip under this folder, one per setting")
    parser.add_argument("--baseline", type=Path, help="an earlier --json report of another model to pair against")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    baseline = json.loads(args.baseline.read_text()) if args.baseline else None
    torch.set_num_threads(args.threads)
    settings = [(spec, parse_setting(spec)) for spec in (args.setting or [""])]
    if (args.resynthesize or args.keep_levels) and any("best_of" in setting for _, setting in settings):
        raise SystemExit("best_of reranks generated clips only; run it without --resynthesize and --keep-levels")
    model = MusicLM.from_pretrained(args.model)
    levels = model.stages["coarse"].config.tokens.coarse_levels
    if any(not 1 <= keep <= levels for keep in args.keep_levels):
        raise SystemExit(f"--keep-levels must lie in 1..{levels} (this model's coarse levels)")
    texts, real = corpus_prompts(args.prompts, args.n, 0)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    if baseline is not None:
        check_baseline(baseline, texts, seeds)
    real_mcc = float(model.mulan_similarity(real, texts).mean())
    rows: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}

    def add_row(name: str, render: Callable, save: Path | None = None) -> None:
        began = time.perf_counter()
        rows[name] = scored(model, texts, args.batch, seeds, render, save)
        seconds[name] = time.perf_counter() - began
        print(f"{name}: {rows[name].mean():.3f} ({seconds[name]:.0f} s)", file=sys.stderr)

    for spec, setting in settings:
        add_row(spec or "defaults", generated(model, texts, args.duration, setting),
                args.save / f"setting{len(rows)}" if args.save else None)
    for keep in ([0] if args.resynthesize else []) + args.keep_levels:
        kept = "" if not keep else " and coarse level 1" if keep == 1 else f" and coarse levels 1-{keep}"
        name = f"real semantic tokens{kept}" + ("" if keep else " (resynthesis)")
        for spec, setting in settings:
            add_row(name + (f" [{spec}]" if spec else ""),
                    resynthesized(model, texts, real, args.duration, keep, setting))
    base = next(iter(rows.values()))
    report = {"prompts": len(texts), "seeds": seeds, "duration": args.duration, "real clips": real_mcc,
              "captions": texts, "settings": {}}
    for name, scores in rows.items():
        vs_first, p = paired(scores, base)
        report["settings"][name] = {"mcc": float(scores.mean()), "share_of_real": float(scores.mean()) / real_mcc,
                                    "vs_first": vs_first, "p_vs_first": p,
                                    "seconds": seconds.get(name), "per_caption": scores.tolist()}
    if baseline is not None:
        compare_to_baseline(report, baseline)
    if args.json:
        print(json.dumps(report, indent=1))
        return
    print(f"{len(texts)} test captions of {args.prompts}, seeds {seeds}; real clips MCC {real_mcc:.3f}\n")
    print("| setting | MCC | share of real | vs first (paired p) | vs baseline (paired p) |\n|---|---|---|---|---|")
    for name, row in report["settings"].items():
        versus = f"{row['vs_baseline']:+.3f} (p {row['p_vs_baseline']:.2g})" if "vs_baseline" in row else ""
        print(f"| {name} | {row['mcc']:.3f} | {row['share_of_real']:.0%} | {row['vs_first']:+.3f} "
              f"(p {row['p_vs_first']:.2g}) | {versus} |")


if __name__ == "__main__":
    main()
