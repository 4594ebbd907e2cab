"""Our codec against Opus (ffmpeg's libopus) at the same bit rates, on real clips.

    python benchmarks/codec_vs_opus.py --model DIR --corpus /path/to/corpus --split test --clips 20
    python benchmarks/codec_vs_opus.py --model DIR --audio-dir some/folder --figure spectrograms.png

For every clip (24 kHz mono, up to ``--seconds``) it codes the audio with our codec at 1.5/3/6 kbps and with
Opus at 6 and 12 kbps (libopus cannot go below 6 kbps; lower requests are reported at the rate it really
used), then prints a markdown table of means: log-mel L1 and multi-resolution STFT distance (lower is
better), SI-SDR in dB and the chroma agreement (how often the dominant pitch class survives; higher is
better) and the bit rate actually spent (Opus: the sum of its packet
sizes, without the container). Optionally a figure of log-mel spectrograms: original / ours / Opus.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from musiclm import SAMPLE_RATE
from musiclm.audio import READABLE_SUFFIXES, load_audio, save_audio
from musiclm.bundled import default_model_dir
from musiclm.codec.api import Codec
from musiclm.codec.metrics import chroma_agreement, mel_distance, si_sdr, stft_distance
from musiclm.data.manifest import read_manifest
from musiclm.errors import MusicLMError

OURS_KBPS = (1.5, 3.0, 6.0)
OPUS_KBPS = (6.0, 12.0)


def find_clips(args: argparse.Namespace) -> list[Path]:
    if args.corpus:
        records = read_manifest(args.corpus, args.split)
        paths = [Path(args.corpus) / r.path for r in records]
    else:
        paths = sorted(p for p in Path(args.audio_dir).rglob("*") if p.suffix.lower() in READABLE_SUFFIXES)
    if not paths:
        raise MusicLMError("no audio clips found")
    picks = np.linspace(0, len(paths) - 1, min(args.clips, len(paths))).round().astype(int)
    return [paths[i] for i in sorted(set(picks.tolist()))]


def opus_roundtrip(wav: np.ndarray, kbps: float, workdir: Path) -> tuple[np.ndarray, float]:
    """Encode with libopus at ``kbps`` and decode; returns the decoded audio and the kbps really spent."""
    source, coded, decoded = workdir / "in.wav", workdir / "coded.opus", workdir / "decoded.wav"
    save_audio(source, wav, SAMPLE_RATE)
    quiet = ["-hide_banner", "-loglevel", "error", "-y"]
    subprocess.run(["ffmpeg", *quiet, "-i", str(source), "-c:a", "libopus", "-b:a", f"{kbps * 1000:.0f}",
                    "-application", "audio", str(coded)], check=True)
    subprocess.run(["ffmpeg", *quiet, "-i", str(coded), "-ar", str(SAMPLE_RATE), "-ac", "1", "-c:a", "pcm_f32le",
                    str(decoded)], check=True)
    probe = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries", "packet=size",
                            "-of", "csv=p=0", str(coded)], check=True, capture_output=True, text=True)
    payload_bits = 8 * sum(int(line) for line in probe.stdout.split() if line.strip().isdigit())
    out, _ = load_audio(decoded, sample_rate=SAMPLE_RATE, allow_silent=True)
    out = np.pad(out[: len(wav)], (0, max(0, len(wav) - len(out))))
    return out, payload_bits / (len(wav) / SAMPLE_RATE) / 1000.0


def scores(reference: np.ndarray, estimate: np.ndarray) -> dict[str, float]:
    ref, est = torch.from_numpy(reference)[None], torch.from_numpy(estimate)[None]
    return {"mel_l1": float(mel_distance(ref, est)[0]), "stft": float(stft_distance(ref, est)[0]),
            "si_sdr": float(si_sdr(ref, est)[0]), "chroma": float(chroma_agreement(ref, est)[0])}


def spectrogram_figure(path: Path, panels: dict[str, np.ndarray]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from musiclm.features import LogMel

    mel = LogMel(SAMPLE_RATE, n_fft=1024, hop_length=256, n_mels=80)
    figure, axes = plt.subplots(len(panels), 1, figsize=(10, 2.4 * len(panels)), sharex=True)
    for axis, (title, wav) in zip(np.atleast_1d(axes), panels.items()):
        axis.imshow(mel(torch.from_numpy(wav))[0].numpy(), origin="lower", aspect="auto", cmap="magma",
                    vmin=-11, vmax=3, extent=(0, len(wav) / SAMPLE_RATE, 0, 80))
        axis.set_title(title, fontsize=10)
        axis.set_ylabel("mel bin")
    np.atleast_1d(axes)[-1].set_xlabel("seconds")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="exported codec folder (default: $MUSICLM_CODEC or the bundled codec)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--corpus", help="a corpus folder (manifest.jsonl)")
    source.add_argument("--audio-dir", help="a folder of audio files")
    parser.add_argument("--split", default="test", help="corpus split (default test)")
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0, help="at most this much of each clip")
    parser.add_argument("--figure", help="write a spectrogram figure (original / ours 6 kbps / Opus 6 kbps)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's own)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        raise MusicLMError("ffmpeg and ffprobe (with libopus) are needed")

    codec = Codec.from_pretrained(args.model or default_model_dir("codec"), device=args.device)
    systems = [f"ours {k:g} kbps" for k in OURS_KBPS] + [f"opus {k:g} kbps" for k in OPUS_KBPS]
    results: dict[str, list[dict[str, float]]] = {name: [] for name in systems}
    figure_panels: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory(prefix="codec-vs-opus-") as tmp:
        for path in find_clips(args):
            wav, _ = load_audio(path, sample_rate=SAMPLE_RATE, allow_silent=True)
            wav = wav[: int(args.seconds * SAMPLE_RATE)]
            if float(np.abs(wav).max()) <= 1e-4:
                continue  # silent clips have no SI-SDR
            for kbps in OURS_KBPS:
                out = codec.roundtrip(wav, bitrate=kbps)
                used = codec.bitrate_kbps(codec.levels_for(kbps))
                results[f"ours {kbps:g} kbps"].append({**scores(wav, out), "kbps": used})
                if kbps == 6.0 and not figure_panels:
                    figure_panels = {f"original: {path.name}": wav, "ours, 6 kbps": out}
            for kbps in OPUS_KBPS:
                out, used = opus_roundtrip(wav, kbps, Path(tmp))
                results[f"opus {kbps:g} kbps"].append({**scores(wav, out), "kbps": used})
                if kbps == 6.0 and len(figure_panels) == 2:
                    figure_panels["Opus, 6 kbps"] = out
    if not results[systems[0]]:
        raise MusicLMError("every clip was silent")
    table = {name: {key: float(np.nanmean([r[key] for r in rows])) for key in rows[0]}
             for name, rows in results.items()}
    if args.figure and figure_panels:
        spectrogram_figure(Path(args.figure), figure_panels)
    if args.json:
        json.dump({"clips": len(results[systems[0]]), "model": str(args.model), "systems": table}, sys.stdout,
                  indent=2)
        print()
    else:
        print(f"{len(results[systems[0]])} clips, at most {args.seconds:g} s each, 24 kHz mono\n")
        print("| system | kbps used | log-mel L1 (lower) | MR-STFT distance (lower) | SI-SDR dB (higher) "
              "| chroma agreement (higher) |")
        print("|---|---|---|---|---|---|")
        for name, row in table.items():
            print(f"| {name} | {row['kbps']:.2f} | {row['mel_l1']:.3f} | {row['stft']:.3f} | {row['si_sdr']:.2f} "
                  f"| {row['chroma']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
