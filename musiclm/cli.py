"""``musiclm <command>``: parses arguments and calls the package; nothing else lives here.

Conventions every command follows: progress and logs go to stderr; a command that prints results accepts
``--json`` and then prints exactly one JSON document on stdout; exit code 0 on success, 1 with a one-line
cause on stderr on failure (2 for usage errors); ``--device cpu|cuda|auto`` wherever compute happens.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

from musiclm import __version__
from musiclm.errors import MusicLMError

Handler = Callable[[argparse.Namespace], int | None]


def emit(result: Any, args: argparse.Namespace, human: Callable[[Any], str] | None = None) -> None:
    """Print a command's result: one JSON document with ``--json``, else human-readable text."""
    if getattr(args, "json", False):
        json.dump(result, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        print(human(result) if human else _plain_text(result))
    sys.stdout.flush()


def _plain_text(result: Any) -> str:
    if isinstance(result, dict):
        width = max((len(str(k)) for k in result), default=0)
        return "\n".join(f"{str(k).ljust(width)}  {v}" for k, v in result.items())
    return str(result)


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print exactly one JSON document on stdout")


def add_device_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="where to compute (default: auto = CUDA when available)")


def add_model_flags(parser: argparse.ArgumentParser, component: str, label: str) -> None:
    """``--model`` (default: ``$MUSICLM_<COMPONENT>`` or the bundled model), ``--threads``, ``--device``, ``--json``."""
    from musiclm.bundled import model_env

    parser.add_argument("--model", help=f"{label} folder (default: ${model_env(component)} or the bundled {label})")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    add_device_flag(parser)
    add_json_flag(parser)


# ------------------------------------------------------------------------------------------------ info
def _cmd_info(args: argparse.Namespace) -> None:
    import platform

    import torch

    from musiclm.config import presets

    result = {
        "musiclm": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "cpu_threads": torch.get_num_threads(),
        "presets": presets(),
    }
    try:
        from musiclm.data.soundfonts import find_soundfonts

        result["soundfonts"] = [str(sf.path) for sf in find_soundfonts()]
    except (ImportError, MusicLMError) as exc:
        result["soundfonts"] = f"unavailable: {exc}"
    emit(result, args)


# ----------------------------------------------------------------------------------------------- audio
def _cmd_audio_info(args: argparse.Namespace) -> None:
    from musiclm.audio import audio_info, load_audio

    info = audio_info(args.file)
    wav, _ = load_audio(args.file, sample_rate=None, allow_silent=True)
    peak = float(abs(wav).max())
    info.update({"peak": peak, "rms": float((wav**2).mean() ** 0.5)})
    emit(info, args)


def _cmd_audio_convert(args: argparse.Namespace) -> None:
    from musiclm.audio import load_audio, loudness_normalize, peak_normalize, save_audio

    wav, sr = load_audio(args.input, sample_rate=args.sample_rate)
    if args.normalize == "peak":
        wav = peak_normalize(wav, args.peak_db)
    elif args.normalize == "loudness":
        wav = loudness_normalize(wav, sr, args.lufs, args.peak_db)
    out = save_audio(args.output, wav, sr)
    emit({"output": str(out), "sample_rate": sr, "seconds": round(len(wav) / sr, 3)}, args)


# ---------------------------------------------------------------------------------------------- config
def _cmd_config_show(args: argparse.Namespace) -> None:
    import yaml

    from musiclm.config import preset, to_dict

    data = to_dict(preset(args.model, args.preset))
    if args.json:
        emit(data, args)
    else:
        print(yaml.safe_dump(data, sort_keys=False), end="")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="musiclm",
        description="Offline text-to-music at 24 kHz: MuLan, semantic tokens and SoundStream acoustic tokens.",
    )
    parser.add_argument("--version", action="version", version=f"musiclm {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    info = sub.add_parser("info", help="versions, devices, soundfonts and presets of this installation")
    add_json_flag(info)
    info.set_defaults(handler=_cmd_info)

    audio = sub.add_parser("audio", help="inspect and convert audio files")
    audio_sub = audio.add_subparsers(dest="audio_command", metavar="ACTION", required=True)
    a_info = audio_sub.add_parser("info", help="rate, channels, length and level of an audio file")
    a_info.add_argument("file")
    add_json_flag(a_info)
    a_info.set_defaults(handler=_cmd_audio_info)
    a_conv = audio_sub.add_parser("convert", help="decode, resample, downmix and normalise to WAV/FLAC")
    a_conv.add_argument("input")
    a_conv.add_argument("output", help="a .wav or .flac path")
    a_conv.add_argument("--sample-rate", type=int, default=24_000)
    a_conv.add_argument("--normalize", choices=["none", "peak", "loudness"], default="none")
    a_conv.add_argument("--peak-db", type=float, default=-1.0)
    a_conv.add_argument("--lufs", type=float, default=-14.0)
    add_json_flag(a_conv)
    a_conv.set_defaults(handler=_cmd_audio_convert)

    config = sub.add_parser("config", help="show the preset configs (small, paper) of each model")
    config_sub = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = config_sub.add_parser("show", help="print a preset as YAML (a starting point for a config file)")
    show.add_argument("model", help="e.g. train")
    show.add_argument("--preset", default="small")
    add_json_flag(show)
    show.set_defaults(handler=_cmd_config_show)

    for register in _extensions():
        register(sub)
    return parser


def _extensions() -> list[Callable[[Any], None]]:
    """Command groups defined beside the parts they drive (each module has ``register(subparsers)``)."""
    registers = []
    for module_name in ("musiclm.generate_cli", "musiclm.data.cli", "musiclm.codec.cli", "musiclm.mulan.cli",
                        "musiclm.semantic.cli", "musiclm.tokenstore.cli", "musiclm.lm.cli", "musiclm.eval.tagger_cli",
                        "musiclm.server.cli", "musiclm.eval.cli", "musiclm.eval.generation_checks_cli",
                        "musiclm.melody.cli"):
        try:
            module = __import__(module_name, fromlist=["register"])
        except ModuleNotFoundError as exc:
            if not (exc.name and module_name.startswith(exc.name)):
                raise
            continue
        registers.append(module.register)
    return registers


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        code = handler(args)
    except MusicLMError as exc:
        print(f"musiclm: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("musiclm: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
