"""Generation speed: tokens per second of each stage and the end-to-end real-time factor.

    python benchmarks/generation_speed.py                       # random weights at the small preset sizes
    python benchmarks/generation_speed.py --model DIR           # a trained model folder
    python benchmarks/generation_speed.py --batch 1 4 --seconds 10 --threads 1 --json

Speed does not depend on what the weights learned, so the default measures the architecture of the ``small``
presets with random weights (``musiclm.random_model``); pass ``--model`` for a real folder. Each stage is
timed separately (its sampled tokens / its wall time) and the whole pipeline end to end (text -> waveform);
the real-time factor is wall seconds per second of audio per batch row (< 1 is faster than real time). The
cached/uncached ratio of the semantic stage is measured in the same run as the baseline for the KV cache.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from musiclm.pipeline import MusicLM


def timed_stages(model: MusicLM, batch: int, seconds: float, seed: int = 0) -> dict[str, float]:
    """Per-stage wall time and token counts of one generation (progress callbacks mark the stage changes)."""
    marks: dict[str, list[float]] = {}
    totals: dict[str, int] = {}

    def progress(stage: str, done: int, total: int) -> None:
        now = time.perf_counter()
        span = marks.setdefault(stage, [now, now])
        span[1] = now
        totals[stage] = total

    prompts = ["an upbeat funk track with slap bass and brass"] * batch
    started = time.perf_counter()
    model.generate(prompts, duration=seconds, seed=seed, progress=progress)
    wall = time.perf_counter() - started
    out: dict[str, float] = {"wall_s": wall, "rtf": wall / seconds}
    order = ["semantic", "coarse", "fine", "decode"]
    for i, stage in enumerate(order):
        if stage not in marks:
            continue
        start = marks[stage][0]
        # a stage ends where the next begins (its first callback comes after its first step)
        end = marks[order[i + 1]][0] if i + 1 < len(order) and order[i + 1] in marks else marks[stage][1]
        out[f"{stage}_s"] = end - start
        if stage != "decode":
            out[f"{stage}_tokens"] = totals[stage]
            out[f"{stage}_tok_per_s"] = totals[stage] * batch / max(end - start, 1e-9)
    return out


def cache_ratio(model: MusicLM, steps: int = 200) -> dict[str, float]:
    """Semantic-stage sampling with and without the KV cache, same tokens, same run."""
    stage = model.stages["semantic"]
    mulan = model.mulan.text_tokens(["a calm piano piece"])
    layout = stage.layout

    def condition(start: int, first_new: int, end: int):
        cond = layout.condition(mulan)
        return cond, layout.drop_condition(cond, torch.ones(cond.shape[0], dtype=torch.bool))

    frames = min(steps, stage.config.window_frames())
    times = {}
    for cache in (True, False):
        started = time.perf_counter()
        stage.generate(frames, condition, 1, generator=torch.Generator().manual_seed(0), use_cache=cache)
        times["cached" if cache else "uncached"] = frames / (time.perf_counter() - started)
    return {"semantic_tok_per_s_cached": times["cached"], "semantic_tok_per_s_uncached": times["uncached"],
            "cache_speedup": times["cached"] / times["uncached"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model folder (default: random weights at the small preset sizes)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.model:
        model = MusicLM.from_pretrained(args.model, device=args.device)
        label = args.model
    else:
        from musiclm.random_model import random_musiclm

        model = random_musiclm("small", seed=0, device=args.device)
        label = "random weights, small preset sizes"
    params = {name: stage.num_parameters() for name, stage in model.stages.items()}
    model.generate(["warm up"], duration=1.0)  # first-call allocations
    rows = [{"batch": b, **timed_stages(model, b, args.seconds)} for b in args.batch]
    report = {"model": label, "device": args.device, "threads": args.threads, "seconds": args.seconds,
              "cpu": platform.processor() or platform.machine(), "stage_parameters": params, "runs": rows,
              **cache_ratio(model)}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"model: {label}; device {args.device}, {args.threads} thread(s); {args.seconds:g} s of audio")
    print("stage parameters: " + ", ".join(f"{k} {v / 1e6:.2f} M" for k, v in params.items()))
    print(f"{'batch':>5} {'semantic tok/s':>15} {'coarse tok/s':>13} {'fine tok/s':>11} {'decode s':>9} "
          f"{'wall s':>8} {'RTF':>7}")
    for r in rows:
        print(f"{r['batch']:>5} {r.get('semantic_tok_per_s', 0):>15.0f} {r.get('coarse_tok_per_s', 0):>13.0f} "
              f"{r.get('fine_tok_per_s', 0):>11.0f} {r.get('decode_s', 0):>9.2f} {r['wall_s']:>8.1f} "
              f"{r['rtf'] / r['batch']:>7.2f}")
    print(f"KV cache: semantic stage {report['semantic_tok_per_s_cached']:.0f} tok/s cached vs "
          f"{report['semantic_tok_per_s_uncached']:.0f} uncached ({report['cache_speedup']:.1f}x)")
    print("RTF = wall seconds per second of audio per batch row (< 1 is faster than real time); "
          "tok/s counts all rows")


if __name__ == "__main__":
    main()
