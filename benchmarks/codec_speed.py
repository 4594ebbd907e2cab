"""Encode/decode speed of the SoundStream codec as real-time factors (seconds of audio per second of compute).

    python benchmarks/codec_speed.py                       # small preset, random weights, CPU (1 and all threads)
    python benchmarks/codec_speed.py --model DIR --json    # an exported codec
    python benchmarks/codec_speed.py --preset paper --device cuda

Weights do not change the speed, so random weights measure a preset before any training. Timings are the
best of ``--repeats`` runs after a warm-up (on a busy machine the best run is the least disturbed one).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable

import torch

from musiclm.codec.api import Codec
from musiclm.codec.model import SoundStream, count_parameters
from musiclm.config import preset
from musiclm.device import resolve_device


def best_seconds(fn: Callable[[], object], repeats: int, sync: Callable[[], None]) -> float:
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(codec: Codec, batch: int, seconds: float, repeats: int) -> dict[str, float]:
    """Real-time factors of encode and decode for ``batch`` clips of ``seconds``."""
    device = codec.device
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    wav = 0.1 * torch.randn(batch, int(seconds * codec.sample_rate), device=device)
    codes = codec.encode(wav)
    audio_seconds = batch * seconds
    encode = best_seconds(lambda: codec.encode(wav), repeats, sync)
    decode = best_seconds(lambda: codec.decode(codes), repeats, sync)
    return {"batch": batch, "clip_seconds": seconds, "encode_rtf": audio_seconds / encode,
            "decode_rtf": audio_seconds / decode, "encode_s": encode, "decode_s": decode}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="exported codec folder (default: random weights of --preset)")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--threads", type=int, nargs="*", help="CPU thread counts to try (default: 1 and all)")
    parser.add_argument("--batches", type=int, nargs="*", default=[1, 16])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    if args.model:
        codec = Codec.from_pretrained(args.model, device=device)
    else:
        torch.manual_seed(0)
        config = preset("codec", args.preset).model
        config.kmeans_init = False  # random codebooks: the speed is the same as trained ones
        codec = Codec(SoundStream(config), device=device)
    threads = args.threads or sorted({1, torch.get_num_threads()})
    if device.type == "cuda":
        threads = [torch.get_num_threads()]
    rows = []
    for count in threads:
        torch.set_num_threads(count)
        for batch in args.batches:
            seconds = 10.0 if batch == 1 else 1.0
            rows.append({"device": str(device), "threads": count, **measure(codec, batch, seconds, args.repeats)})
    result = {"preset": None if args.model else args.preset, "model": args.model,
              "parameters": count_parameters(codec.model), "rows": rows,
              "cpu_threads_available": os.cpu_count(), "load_average_1min": os.getloadavg()[0]}
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
    else:
        print(f"codec: {args.model or 'preset ' + args.preset} ({result['parameters'] / 1e6:.2f} M parameters); "
              f"{os.cpu_count()} CPUs, load average {result['load_average_1min']:.1f} (busy CPUs slow it down)\n")
        print("| device | threads | batch x seconds | encode x real time | decode x real time |")
        print("|---|---|---|---|---|")
        for row in rows:
            print(f"| {row['device']} | {row['threads']} | {row['batch']} x {row['clip_seconds']:g} s | "
                  f"{row['encode_rtf']:.0f} | {row['decode_rtf']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
