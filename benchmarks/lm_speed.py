"""Sampling speed of the stage Transformer: tokens/s of ``generate_tokens`` with and without the KV cache.

    OMP_NUM_THREADS=1 python benchmarks/lm_speed.py --steps 300          # small preset, CPU, 1 thread
    python benchmarks/lm_speed.py --batch 1 2 8 --weight-dtypes float32 float16 --json
    python benchmarks/lm_speed.py --preset paper --device cuda --steps 1000
    python benchmarks/lm_speed.py --aligned 14 --weight-dtypes float16 --no-uncached    # cost of a pitch contour

Random weights sample at the same speed as trained ones. Each configuration generates ``--steps`` tokens per
sequence after a ``--prefix``-token prompt, once with the cache and once recomputing the whole sequence every
step (the reference path), after a short warm-up; the speed-up is the ratio of the two in the same run.
``tok/s`` counts tokens of all sequences in the batch; ``cpu tok/s`` divides by this process's CPU time
instead of wall time (on a busy machine it shows what an idle core would give). ``--weight-dtypes float16``
runs the matrix products with half-precision weight copies (``generate_tokens(weight_dtype=...)``).
``--aligned N`` gives the model an aligned embedding of ``N`` ids (the semantic stage's pitch contour: 14) and
times every cached configuration a second time with aligned ids on every position; ``aligned cost`` is the
ratio of the two wall times in the same run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from musiclm.device import resolve_device
from musiclm.lm.config import TRANSFORMER_PRESETS, transformer_config
from musiclm.lm.sampling import SamplingParams, generate_tokens
from musiclm.lm.transformer import Transformer

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def timed_generation(model: Transformer, batch: int, prefix: int, steps: int, use_cache: bool,
                     weight_dtype: torch.dtype, range_width: int, aligned: bool = False) -> dict[str, float]:
    """Wall and CPU seconds of one ``generate_tokens`` call (after a short warm-up)."""
    device = model.embedding.weight.device
    vocab = model.config.vocab_size
    generator = torch.Generator(device=device).manual_seed(0)
    prompt = torch.randint(0, vocab, (batch, prefix), generator=generator, device=device)
    starts = (torch.arange(steps) * range_width) % (vocab - range_width + 1)  # ranges like interleaved RVQ levels
    ranges = torch.stack([starts, starts + range_width], dim=1)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    params = SamplingParams(temperature=1.0)
    ids = None
    if aligned:
        ids = torch.randint(1, model.config.aligned_vocab, (batch, prefix + steps), generator=generator,
                            device=device)
    generate_tokens(model, prompt, ranges[:4], params, generator, use_cache=use_cache, weight_dtype=weight_dtype,
                    aligned=ids)
    sync()
    wall, cpu = time.perf_counter(), time.process_time()
    generate_tokens(model, prompt, ranges, params, generator, use_cache=use_cache, weight_dtype=weight_dtype,
                    aligned=ids)
    sync()
    return {"seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="small", choices=sorted(TRANSFORMER_PRESETS))
    parser.add_argument("--vocab", type=int, default=None, help="vocabulary size (default: the config's 4096)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--steps", type=int, default=500, help="tokens generated per sequence")
    parser.add_argument("--prefix", type=int, default=100, help="prompt tokens per sequence")
    parser.add_argument("--range-width", type=int, default=None,
                        help="vocabulary range sampled per step (default: the whole vocabulary)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--weight-dtypes", nargs="+", choices=sorted(DTYPES), default=None,
                        help="dtypes of the matrix products (default: float32 and float16 on CPU, float32 on GPU)")
    parser.add_argument("--no-uncached", action="store_true", help="skip the (slow) uncached reference runs")
    parser.add_argument("--aligned", type=int, default=0, metavar="N",
                        help="also time cached sampling with an aligned embedding of N ids (pitch contour: 14)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    overrides = {"dropout": 0.0, "max_seq_len": max(4096, args.prefix + args.steps), "aligned_vocab": args.aligned}
    if args.vocab:
        overrides["vocab_size"] = args.vocab
    torch.manual_seed(0)
    model = Transformer(transformer_config(args.preset, **overrides)).to(device).eval()
    range_width = args.range_width or model.config.vocab_size
    if not 1 <= range_width <= model.config.vocab_size:
        parser.error(f"--range-width must be within [1, {model.config.vocab_size}]")
    dtype_names = args.weight_dtypes or (["float32", "float16"] if device.type == "cpu" else ["float32"])

    rows = []
    for name in dtype_names:
        for batch in args.batch:
            row: dict[str, object] = {"preset": args.preset, "device": str(device), "threads": args.threads,
                                      "weights": name, "batch": batch, "prefix": args.prefix, "steps": args.steps,
                                      "vocab": model.config.vocab_size, "range_width": range_width,
                                      "parameters": model.num_parameters()}
            tokens = batch * args.steps
            cached = timed_generation(model, batch, args.prefix, args.steps, True, DTYPES[name], range_width)
            row["cached_tok_s"] = tokens / cached["seconds"]
            row["cached_cpu_tok_s"] = tokens / max(cached["cpu_seconds"], 1e-9)
            row["cached_ms_per_step"] = 1000 * cached["seconds"] / args.steps
            if args.aligned:
                with_ids = timed_generation(model, batch, args.prefix, args.steps, True, DTYPES[name], range_width,
                                            aligned=True)
                row["aligned_tok_s"] = tokens / with_ids["seconds"]
                row["aligned_cost"] = with_ids["seconds"] / cached["seconds"]
            if not args.no_uncached:
                uncached = timed_generation(model, batch, args.prefix, args.steps, False, DTYPES[name], range_width)
                row["uncached_tok_s"] = tokens / uncached["seconds"]
                row["speedup"] = uncached["seconds"] / cached["seconds"]
            rows.append(row)
            if not args.json:
                print(f"  measured {name} batch {batch}", file=sys.stderr, flush=True)

    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"preset {args.preset} ({model.num_parameters() / 1e6:.1f}M parameters, vocab {model.config.vocab_size}, "
          f"range {range_width}), {device}, {args.threads} thread(s), prefix {args.prefix}, {args.steps} steps")
    header = f"{'weights':>8} {'batch':>5} {'cached tok/s':>13} {'cpu tok/s':>10} {'ms/step':>8}"
    header += "" if args.no_uncached else f" {'uncached tok/s':>15} {'speed-up':>9}"
    header += f" {'aligned tok/s':>14} {'aligned cost':>13}" if args.aligned else ""
    print(header)
    for row in rows:
        line = (f"{row['weights']:>8} {row['batch']:>5} {row['cached_tok_s']:>13.1f} {row['cached_cpu_tok_s']:>10.1f}"
                f" {row['cached_ms_per_step']:>8.2f}")
        if not args.no_uncached:
            line += f" {row['uncached_tok_s']:>15.1f} {row['speedup']:>8.1f}x"
        if args.aligned:
            line += f" {row['aligned_tok_s']:>14.1f} {row['aligned_cost']:>12.3f}x"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
