"""What caps the MuLan text-audio similarity (MCC) of generated music: real clips through degradations and the codec.

    python benchmarks/mcc_ceiling.py --model musiclm/pretrained --prompts corpora/synth --n 32 [--generate] [--json]
    python benchmarks/mcc_ceiling.py --model musiclm/pretrained --codec runs/new-codec-export ...   # another codec

Takes the same test captions and real clips as ``benchmarks/semantic_ablation.py`` and scores MCC (the
model's own MuLan: cosine of the caption's text embedding and the clip's audio embedding) on the real clips as
they are, after generic degradations (white noise, low-pass filters, a gain change, Opus 6 and 12 kbps when
ffmpeg has libopus), after the model's codec at several RVQ level counts, and through the codec's encoder and
decoder without quantising (``--codec DIR``: another codec's, before any stage is trained on its tokens;
MuLan stays the model's). A real clip after the codec's roundtrip is what perfect stages could give back,
so the codec rows are the cap on generated MCC. ``--generate`` also generates every caption once (seed 0)
and decodes the same generated tokens at each level count (do the fine levels help?). ``--from-audio-tokens``
also generates from each real clip's own MuLan *audio* tokens (what the stages are conditioned on in
training) instead of its caption's text tokens, with the same seed: the gap between that row and the
text-conditioned one is what the mismatch of MuLan's text and audio tokens costs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import scipy.signal
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from codec_vs_opus import opus_roundtrip
from semantic_ablation import corpus_prompts, mcc

from musiclm.codec.api import Codec
from musiclm.pipeline import MusicLM, limit_peak

LEVELS = (3, 4, 6, 12)


def white_noise(wav: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    power = float(np.mean(wav.astype(np.float64) ** 2))
    noise = rng.standard_normal(len(wav)) * np.sqrt(power / 10 ** (snr_db / 10))
    return (wav + noise).astype(np.float32)


def low_pass(wav: np.ndarray, cutoff_hz: float, sample_rate: int) -> np.ndarray:
    sos = scipy.signal.butter(8, cutoff_hz, fs=sample_rate, output="sos")
    return scipy.signal.sosfilt(sos, wav).astype(np.float32)


def codec_rows(codec: Codec, real: list[np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Each clip through the codec at every level count of ``LEVELS`` and through encoder+decoder alone."""
    soundstream = codec.model
    rows: dict[str, list[np.ndarray]] = {f"codec, {n} levels": [] for n in LEVELS}
    rows["codec encoder and decoder, no quantiser"] = []
    with torch.inference_mode():
        for wav in real:
            codes = codec.encode(wav[None], codec.sample_rate, bitrate=None)
            for n in LEVELS:
                rows[f"codec, {n} levels"].append(codec.decode(codes[:, :n], length=len(wav))[0].float().numpy())
            audio = torch.as_tensor(wav, device=codec.device)[None]
            decoded = soundstream.reconstruct_unquantized(audio)[0]
            rows["codec encoder and decoder, no quantiser"].append(decoded.float().cpu().numpy())
    return rows


def generated_rows(model: MusicLM, texts: list[str], duration: float, batch: int) -> dict[str, list[np.ndarray]]:
    """Each caption generated once (seed 0); the same tokens decoded at every level count of ``LEVELS``."""
    codec, captured = model.codec, []
    decode = codec.decode

    def keep(codes: torch.Tensor, length: int | None = None, **kwargs):
        captured.append((codes, length))
        return decode(codes, length=length, **kwargs)

    rows: dict[str, list[np.ndarray]] = {f"generated, {n} levels": [] for n in LEVELS}
    codec.decode = keep
    try:
        for start in range(0, len(texts), batch):
            captured.clear()
            model.generate(texts[start:start + batch], duration=duration, seed=0)
            codes, length = captured[-1]
            for n in LEVELS:
                audio = limit_peak(decode(codes[:, :n], length=length).float().cpu())  # as the pipeline does
                rows[f"generated, {n} levels"].extend(audio.numpy())
    finally:
        codec.decode = decode
    return rows


def audio_token_rows(model: MusicLM, real: list[np.ndarray], duration: float,
                     batch: int) -> dict[str, list[np.ndarray]]:
    """Each real clip's MuLan audio tokens rendered through the stages (seed 0, the model's sampling)."""
    out: list[np.ndarray] = []
    sampling = model.sampling()
    with torch.inference_mode():
        for start in range(0, len(real), batch):
            tokens = torch.cat([model.mulan.audio_tokens(w, model.sample_rate) for w in real[start:start + batch]])
            out.extend(model.render_tokens([(0.0, tokens)], duration, sampling, seed=0).numpy())
    return {"generated from the clips' MuLan audio tokens": out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--prompts", required=True, help="corpus folder (test split captions and clips)")
    parser.add_argument("--codec", help="codec folder for the codec rows (default: the model's)")
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--generate", action="store_true", help="also generate and decode at each level count")
    parser.add_argument("--from-audio-tokens", action="store_true",
                        help="also generate from each clip's MuLan audio tokens instead of its caption's text tokens")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = MusicLM.from_pretrained(args.model)
    rate = model.sample_rate
    texts, real = corpus_prompts(args.prompts, args.n, 0)
    rng = np.random.default_rng(0)
    rows: dict[str, list[np.ndarray]] = {"real clips": real}
    for snr in (30, 20, 10):
        rows[f"white noise at {snr} dB SNR"] = [white_noise(w, snr, rng) for w in real]
    for cutoff in (8000, 4000, 2000):
        rows[f"low-pass at {cutoff // 1000} kHz"] = [low_pass(w, cutoff, rate) for w in real]
    rows["-12 dB gain"] = [w * np.float32(10 ** (-12 / 20)) for w in real]
    if shutil.which("ffmpeg"):
        with tempfile.TemporaryDirectory(prefix="mcc-ceiling-") as tmp:
            for kbps in (12.0, 6.0):
                rows[f"Opus {kbps:g} kbps"] = [opus_roundtrip(w, kbps, Path(tmp))[0] for w in real]
    rows.update(codec_rows(Codec.from_pretrained(args.codec) if args.codec else model.codec, real))
    if args.generate:
        rows.update(generated_rows(model, texts, args.duration, args.batch))
    if args.from_audio_tokens:
        rows.update(audio_token_rows(model, real, args.duration, args.batch))
    scores = {name: mcc(model.mulan, texts, audio) for name, audio in rows.items()}
    real_mcc = scores["real clips"]
    if args.json:
        print(json.dumps({"prompts": len(texts), "mcc": scores,
                          "share_of_real": {k: v / real_mcc for k, v in scores.items()}}))
        return
    print(f"{len(texts)} test captions of {args.prompts}\n")
    print("| the real clips after | MCC | share of real |\n|---|---|---|")
    for name, value in scores.items():
        print(f"| {name} | {value:.3f} | {value / real_mcc:.0%} |")


if __name__ == "__main__":
    main()
