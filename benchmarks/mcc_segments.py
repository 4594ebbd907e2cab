"""MCC of generated clips by time segment, beside the real clips': does generation drift from its caption?

    python benchmarks/sampling_sweep.py --model musiclm/pretrained --prompts corpora/synth --n 32 --setting "" \\
        --save runs/sweep-clips
    python benchmarks/mcc_segments.py --model musiclm/pretrained --prompts corpora/synth --n 32 \\
        --clips runs/sweep-clips/setting0 --segment 0:2 --segment 0:5 --segment 5:10 --segment 8:10 [--json]

``--clips`` is a folder ``sampling_sweep.py --save`` wrote (``captionNNN-seedS.wav``, caption numbers as in the
sweep: the same ``--prompts`` and ``--n``). Each segment (``START:END`` in seconds) of every clip is scored
against its caption with the model's MuLan, the generated clips averaged over their seeds. A generated clip that
loses its caption over time scores lower in its late segments than in its first while the real clips do not.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import scipy.stats
import soundfile
import torch
from semantic_ablation import corpus_prompts

from musiclm.pipeline import MusicLM

CLIP_NAME = re.compile(r"caption(\d+)-seed(\d+)\.wav$")


def parse_segment(spec: str) -> tuple[float, float]:
    """``"0:2.5"`` -> ``(0.0, 2.5)``."""
    start, sep, end = spec.partition(":")
    try:
        bounds = (float(start), float(end))
    except ValueError:
        bounds = None
    if not sep or bounds is None or not 0 <= bounds[0] < bounds[1]:
        raise SystemExit(f"bad segment {spec!r}: use START:END in seconds with 0 <= START < END")
    return bounds


def saved_clips(folder: Path, captions: int) -> dict[int, list[Path]]:
    """The saved clips of each caption number, every seed."""
    clips: dict[int, list[Path]] = {}
    for path in sorted(folder.glob("*.wav")):
        match = CLIP_NAME.search(path.name)
        if match and int(match.group(1)) < captions:
            clips.setdefault(int(match.group(1)), []).append(path)
    if not clips:
        raise SystemExit(f"no captionNNN-seedS.wav clips in {folder}")
    return clips


def segment_scores(model: MusicLM, texts: list[str], clips: list[list[np.ndarray]], segment: tuple[float, float],
                   rate: int) -> np.ndarray:
    """Per-caption MCC of ``segment`` of each caption's clips (the mean over its clips)."""
    start, end = (int(round(t * rate)) for t in segment)
    rows = [(i, clip[start:end]) for i, group in enumerate(clips) for clip in group]
    if any(part.size == 0 for _, part in rows):
        raise SystemExit(f"segment {segment[0]}:{segment[1]} s lies beyond a clip's end")
    sims = model.mulan_similarity([part for _, part in rows], [texts[i] for i, _ in rows]).numpy()
    owner = np.array([i for i, _ in rows])
    return np.array([sims[owner == i].mean() for i in range(len(clips))])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--prompts", required=True, help="corpus folder (test split captions and clips)")
    parser.add_argument("--clips", type=Path, required=True, help="a folder of sampling_sweep.py --save clips")
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--segment", action="append", default=[], help="START:END in seconds (repeatable)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    segments = [parse_segment(s) for s in (args.segment or ["0:2", "0:5", "5:10", "8:10"])]
    model = MusicLM.from_pretrained(args.model)
    texts, real = corpus_prompts(args.prompts, args.n, 0)
    found = saved_clips(args.clips, len(texts))
    numbers = sorted(found)
    rate = model.sample_rate
    generated = []
    for i in numbers:
        group = []
        for path in found[i]:
            audio, sr = soundfile.read(path, dtype="float32")
            if sr != rate:
                raise SystemExit(f"{path}: {sr} Hz, expected the model's {rate} Hz")
            group.append(audio)
        generated.append(group)
    texts = [texts[i] for i in numbers]
    real = [[real[i]] for i in numbers]
    report = {"captions": len(numbers), "clips": sum(len(g) for g in generated), "segments": {}}
    first = None
    for segment in segments:
        name = f"{segment[0]:g}-{segment[1]:g} s"
        real_scores = segment_scores(model, texts, real, segment, rate)
        gen_scores = segment_scores(model, texts, generated, segment, rate)
        row = {"real": float(real_scores.mean()), "generated": float(gen_scores.mean()),
               "share_of_real": float(gen_scores.mean() / real_scores.mean()), "per_caption": gen_scores.tolist()}
        if first is None:
            first = gen_scores
        else:
            row["generated_vs_first"] = float((gen_scores - first).mean())
            row["p_vs_first"] = float(scipy.stats.ttest_rel(gen_scores, first).pvalue)
        report["segments"][name] = row
    if args.json:
        print(json.dumps(report, indent=1))
        return
    print(f"{report['captions']} captions, {report['clips']} generated clips\n")
    print("| segment | real | generated | share of real | generated vs first segment (paired p) |")
    print("|---|---|---|---|---|")
    for name, row in report["segments"].items():
        vs = f"{row['generated_vs_first']:+.3f} ({row['p_vs_first']:.2g})" if "p_vs_first" in row else ""
        print(f"| {name} | {row['real']:.3f} | {row['generated']:.3f} | {row['share_of_real']:.0%} | {vs} |")


if __name__ == "__main__":
    main()
