"""``musiclm codec ...``: encode, decode, round-trip, train and export the SoundStream codec.

Picked up by :func:`musiclm.cli._extensions`; handlers import torch-heavy modules lazily so ``musiclm --help``
stays fast. Codes files are ``.npy`` arrays ``[levels, frames]`` (int64) with a ``.json`` sidecar that
records the original length and sample rate, so ``decode`` restores the exact length.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from musiclm.bundled import component_folder, model_env
from musiclm.cli import add_json_flag, add_model_flags, emit
from musiclm.errors import MusicLMError
from musiclm.train.command import add_train_arguments, run_training, set_threads, train_config

MODEL_ENV = model_env("codec")
BITRATE_CHOICES = ("1.5", "3", "6")


class CodecUsageError(MusicLMError):
    """A codec command's argument is unusable."""


def _load_codec(args: argparse.Namespace) -> Any:
    from musiclm.codec.api import Codec

    folder = component_folder(args.model, "codec", "codec model", CodecUsageError)
    return Codec.from_pretrained(folder, device=args.device)


def _sidecar(codes_path: Path) -> Path:
    return codes_path.with_suffix(".json")


# ------------------------------------------------------------------------------------------- encode
def _cmd_encode(args: argparse.Namespace) -> None:
    import numpy as np

    from musiclm.audio import load_audio
    from musiclm.fileio import atomic_path, atomic_write_text

    set_threads(args)
    codec = _load_codec(args)
    wav, rate = load_audio(args.input, sample_rate=None, allow_silent=True)
    codes = codec.encode(wav, sample_rate=rate, bitrate=float(args.bitrate))[0].cpu().numpy().astype(np.int64)
    out = Path(args.output)
    if out.suffix != ".npy":
        raise CodecUsageError(f"{out}: the codes file must end in .npy")
    with atomic_path(out) as tmp, open(tmp, "wb") as handle:
        np.save(handle, codes)
    info = {"input": str(args.input), "codes": str(out), "levels": int(codes.shape[0]),
            "frames": int(codes.shape[1]), "bitrate_kbps": codec.bitrate_kbps(codes.shape[0]),
            "samples": len(wav), "sample_rate": rate, "codec_sample_rate": codec.sample_rate,
            "frame_rate": codec.frame_rate}
    atomic_write_text(_sidecar(out), json.dumps(info, indent=2))
    emit(info, args)


# ------------------------------------------------------------------------------------------- decode
def _cmd_decode(args: argparse.Namespace) -> None:
    import numpy as np

    from musiclm.audio import resample, save_audio

    set_threads(args)
    path = Path(args.codes)
    if not path.exists():
        raise CodecUsageError(f"{path}: no such file")
    try:
        codes = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CodecUsageError(f"{path}: not a codes .npy file ({exc})") from exc
    if codes.ndim not in (2, 3) or not np.issubdtype(codes.dtype, np.integer):
        raise CodecUsageError(f"{path}: expected integer codes [levels, frames], got {codes.dtype} {codes.shape}")
    codec = _load_codec(args)
    meta = json.loads(_sidecar(path).read_text()) if _sidecar(path).exists() else {}
    length, rate = None, codec.sample_rate
    if meta:
        rate = int(meta.get("sample_rate", codec.sample_rate)) if args.original_rate else codec.sample_rate
        length = codec.resampled_length(int(meta["samples"]), int(meta.get("sample_rate", codec.sample_rate)))
    wav = codec.decode(codes, length=length)[0].cpu().numpy()
    if rate != codec.sample_rate:
        samples = int(meta["samples"])
        wav = resample(wav, codec.sample_rate, rate)[:samples]
        wav = np.pad(wav, (0, samples - len(wav)))
    out = save_audio(args.output, wav, rate)
    emit({"codes": str(path), "output": str(out), "levels": int(codes.shape[-2]), "samples": len(wav),
          "sample_rate": rate, "seconds": round(len(wav) / rate, 3)}, args)


# ---------------------------------------------------------------------------------------- roundtrip
def _cmd_roundtrip(args: argparse.Namespace) -> None:
    import torch

    from musiclm.audio import load_audio, save_audio
    from musiclm.codec.metrics import quality_report

    set_threads(args)
    codec = _load_codec(args)
    wav, rate = load_audio(args.input, sample_rate=None if args.original_rate else codec.sample_rate,
                           allow_silent=True)
    out = codec.roundtrip(wav, sample_rate=rate, bitrate=float(args.bitrate))
    save_audio(args.output, out, rate)
    result: dict[str, Any] = {"input": str(args.input), "output": str(args.output), "bitrate_kbps": float(args.bitrate),
                              "levels": codec.levels_for(float(args.bitrate)), "sample_rate": rate,
                              "seconds": round(len(out) / rate, 3)}
    result.update(quality_report(torch.from_numpy(wav), torch.from_numpy(out), rate))
    emit(result, args)


# -------------------------------------------------------------------------------------------- train
def _cmd_train(args: argparse.Namespace) -> None:
    from musiclm.codec.config import CodecTrainingConfig
    from musiclm.codec.recipe import train_codec

    set_threads(args)
    run_training(args, train_config(args, CodecTrainingConfig, "codec"), "codec", train_codec)


# ------------------------------------------------------------------------------------------- export
def _cmd_export(args: argparse.Namespace) -> None:
    from musiclm.codec.api import CONFIG_FILE, WEIGHTS_FILE, Codec
    from musiclm.codec.model import count_parameters

    codec = Codec.from_run(args.run, prefer_ema=not args.no_ema)
    folder = codec.save(args.output)
    size = (folder / WEIGHTS_FILE).stat().st_size
    if size > args.max_mb * 1024 * 1024:
        raise CodecUsageError(f"{folder / WEIGHTS_FILE} is {size / 2**20:.1f} MB, over --max-mb {args.max_mb:g}")
    emit({"run": str(args.run), "weights_from": codec.source, "output": str(folder),
          "files": [CONFIG_FILE, WEIGHTS_FILE], "size_mb": round(size / 2**20, 2),
          "parameters": count_parameters(codec.model), "sample_rate": codec.sample_rate,
          "frame_rate": codec.frame_rate, "levels": codec.num_quantizers}, args)


def register(subparsers: Any) -> None:
    """Add ``musiclm codec ...`` to the main parser."""
    codec = subparsers.add_parser("codec", help="SoundStream codec: audio <-> acoustic tokens; train, export")
    sub = codec.add_subparsers(dest="codec_command", metavar="ACTION", required=True)

    enc = sub.add_parser("encode", help="audio file -> codes .npy [levels, frames] (+ .json sidecar)")
    enc.add_argument("input")
    enc.add_argument("-o", "--output", required=True, help="codes file (.npy)")
    enc.add_argument("--bitrate", choices=BITRATE_CHOICES, default="6", help="kbps: 1.5, 3 or 6 (3/6/12 levels)")
    add_model_flags(enc, "codec", "codec")
    enc.set_defaults(handler=_cmd_encode)

    dec = sub.add_parser("decode", help="codes .npy -> audio file (24 kHz; original length when the sidecar exists)")
    dec.add_argument("codes")
    dec.add_argument("-o", "--output", required=True, help="a .wav or .flac path")
    dec.add_argument("--original-rate", action="store_true", help="resample to the rate recorded in the sidecar")
    add_model_flags(dec, "codec", "codec")
    dec.set_defaults(handler=_cmd_decode)

    rt = sub.add_parser("roundtrip", help="encode and decode an audio file; prints quality measures")
    rt.add_argument("input")
    rt.add_argument("-o", "--output", required=True, help="a .wav or .flac path (24 kHz, the input's duration)")
    rt.add_argument("--bitrate", choices=BITRATE_CHOICES, default="6")
    rt.add_argument("--original-rate", action="store_true", help="write at the input's sample rate and length")
    add_model_flags(rt, "codec", "codec")
    rt.set_defaults(handler=_cmd_roundtrip)

    tr = sub.add_parser("train", help="train (or resume) a codec on corpus folders; works under torchrun")
    add_train_arguments(tr, "codec")
    tr.set_defaults(handler=_cmd_train)

    ex = sub.add_parser("export", help="latest checkpoint of a run -> fp16 safetensors + config.yaml")
    ex.add_argument("run", help="run folder of `musiclm codec train`")
    ex.add_argument("-o", "--output", required=True, help="model folder to write")
    ex.add_argument("--no-ema", action="store_true", help="export the raw weights even if EMA weights exist")
    ex.add_argument("--max-mb", type=float, default=16.0, help="fail if the weights file is larger")
    add_json_flag(ex)
    ex.set_defaults(handler=_cmd_export)
