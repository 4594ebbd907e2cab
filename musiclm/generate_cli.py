"""``musiclm generate "PROMPT"``: text (a story, or an audio prompt to continue) -> 24 kHz WAV files.

Picked up by :func:`musiclm.cli._extensions`; parses, calls :class:`musiclm.pipeline.MusicLM`, writes files.
"""

from __future__ import annotations

import argparse
import os
import re
import time
from pathlib import Path
from typing import Any, ClassVar

from musiclm.cli import add_device_flag, add_json_flag, emit
from musiclm.errors import MusicLMError
from musiclm.pipeline import MODEL_ENV


class GenerateUsageError(MusicLMError):
    """A ``generate`` argument is unusable."""


def add_sampling_arguments(parser: argparse.ArgumentParser) -> None:
    """``--temperature``, ``--top-k``, ``--top-p`` and ``--cfg``: one value for every stage or three."""
    parser.add_argument("--temperature", help="sampling temperature: one value or semantic,coarse,fine "
                                              "(default 1.0,0.95,0.4)")
    parser.add_argument("--top-k", help="keep the k most likely tokens (one value or three)")
    parser.add_argument("--top-p", help="nucleus sampling threshold (one value or three)")
    parser.add_argument("--cfg", help="classifier-free guidance scale (one value or semantic,coarse,fine; default 3)")


def sampling_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of :meth:`MusicLM.generate` that :func:`add_sampling_arguments` parsed; options
    not given are left out (the stages' defaults apply)."""
    values = {"temperature": _numbers(args.temperature, float, "temperature"),
              "top_k": _numbers(args.top_k, int, "top-k"), "top_p": _numbers(args.top_p, float, "top-p"),
              "cfg": _numbers(args.cfg, float, "cfg")}
    return {name: value for name, value in values.items() if value is not None}


def _numbers(text: str | None, kind: type, name: str) -> Any:
    """``"0.9"`` -> 0.9; ``"1.0,0.95,0.4"`` -> [1.0, 0.95, 0.4] (one value per stage)."""
    if text is None:
        return None
    try:
        values = [kind(v) for v in text.split(",")]
    except ValueError:
        raise GenerateUsageError(f"--{name} takes a number or three comma-separated numbers, got {text!r}") from None
    if len(values) not in (1, 3):
        raise GenerateUsageError(f"--{name} takes one value (every stage) or three (semantic,coarse,fine)")
    return values[0] if len(values) == 1 else values


def default_output(prompt: str) -> Path:
    """A file name from the prompt's first words, e.g. ``an-upbeat-funk-track.wav``."""
    words = re.findall(r"[a-z0-9]+", prompt.lower())[:6]
    return Path(("-".join(words) or "musiclm") + ".wav")


def output_paths(output: Path, count: int) -> list[Path]:
    if count == 1:
        return [output]
    return [output.with_name(f"{output.stem}-{i + 1}{output.suffix}") for i in range(count)]


class StageProgress:
    """One tqdm bar per stage, opened when the stage reports first and closed when it is done."""

    LABELS: ClassVar[dict[str, str]] = {"semantic": "semantic tokens", "coarse": "coarse acoustic",
                                        "fine": "fine acoustic", "decode": "decoding", "rerank": "reranking"}

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bars: dict[str, Any] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = tqdm(total=total, desc=self.LABELS.get(stage, stage), unit="tok",
                                          leave=True, dynamic_ncols=True, mininterval=0.5)
        bar.update(done - bar.n)  # tqdm redraws at most every mininterval
        if done >= total:
            bar.close()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def _cmd_generate(args: argparse.Namespace) -> None:
    import numpy as np

    from musiclm.audio import load_audio, save_audio
    from musiclm.bundled import PRETRAINED
    from musiclm.pipeline import MusicLM, story_from_spec
    from musiclm.train.command import set_threads

    if bool(args.prompt) == bool(args.story):
        raise GenerateUsageError('give a PROMPT or --story "0:text;15:text", not both' if args.prompt
                                 else 'give a PROMPT, e.g. musiclm generate "a calm piano piece"')
    if args.prompt is not None and not args.prompt.strip():
        raise GenerateUsageError("the prompt is empty; describe the music, e.g. 'a calm piano piece'")
    MusicLM.check_duration(args.duration)  # fail before the model loads
    story = story_from_spec(args.story) if args.story else None
    sampling = sampling_from_args(args)
    output = Path(args.output) if args.output else default_output(args.prompt or story[0][1])
    if output.suffix.lower() not in (".wav", ".flac"):
        raise GenerateUsageError(f"{output}: the output must end in .wav or .flac")
    if args.melody and (story is not None or args.continue_from):
        raise GenerateUsageError("--melody goes with a PROMPT, not with --story or --continue")
    melody_audio = None
    if args.melody:
        try:
            melody_audio, melody_rate = load_audio(args.melody, sample_rate=None)
        except MusicLMError as exc:
            raise GenerateUsageError(f"--melody {args.melody}: {exc}") from None
    prompt_audio = None
    if args.continue_from:
        try:
            prompt_audio, prompt_rate = load_audio(args.continue_from, sample_rate=None)
        except MusicLMError as exc:
            raise GenerateUsageError(f"--continue {args.continue_from}: {exc}") from None
    set_threads(args)
    folder = args.model or os.environ.get(MODEL_ENV) or None  # None: the bundled model
    started = time.perf_counter()
    model = MusicLM.from_pretrained(folder, device=args.device)
    model.skip_fine_stage = args.draft
    loaded = time.perf_counter()
    progress = StageProgress(not args.no_progress)
    kwargs = {"num_samples": args.samples, "seed": args.seed, "best_of": args.best_of, "progress": progress,
              **sampling}
    try:
        if story is not None:
            audio, rate = model.generate_story(story, args.duration, **kwargs)
        elif melody_audio is not None:
            try:
                audio, rate = model.generate_with_melody([args.prompt], melody_audio, melody_rate, args.duration,
                                                         **kwargs)
            except MusicLMError as exc:
                raise GenerateUsageError(f"--melody {args.melody}: {exc}") from None
        elif prompt_audio is not None:
            audio, rate = model.generate_continuation(prompt_audio, prompt_rate, [args.prompt], args.duration, **kwargs)
        else:
            audio, rate = model.generate([args.prompt], args.duration, **kwargs)
    finally:
        progress.close()
    elapsed = time.perf_counter() - loaded
    paths = output_paths(output, audio.shape[0])
    files = []
    for path, row in zip(paths, audio.numpy()):
        save_audio(path, row, rate)
        entry: dict[str, Any] = {"path": str(path), "seconds": round(len(row) / rate, 3),
                                 "peak": round(float(np.abs(row).max()), 4),
                                 "rms_db": round(float(20 * np.log10(np.sqrt(np.mean(row ** 2)) + 1e-12)), 1)}
        if args.plot:
            from musiclm.plots import save_spectrogram

            png = path.with_suffix(".png")
            save_spectrogram(png, row, rate, title=args.prompt or args.story)
            entry["spectrogram"] = str(png)
        files.append(entry)
    result = {"prompt": args.prompt, "story": story, "melody": args.melody,
              "model": str(getattr(model, "source", None) or PRETRAINED),
              "duration": args.duration, "sample_rate": rate, "seed": args.seed, "files": files,
              "load_seconds": round(loaded - started, 2), "generate_seconds": round(elapsed, 2),
              "real_time_factor": round(elapsed / max(args.duration * len(files), 1e-9), 3)}

    def human(r: dict[str, Any]) -> str:
        lines = [f"wrote {f['path']} ({f['seconds']} s at {r['sample_rate']} Hz, peak {f['peak']})"
                 + (f" and {f['spectrogram']}" if "spectrogram" in f else "") for f in r["files"]]
        lines.append(f"generated in {r['generate_seconds']} s ({r['real_time_factor']} s per second of audio)")
        return "\n".join(lines)

    emit(result, args, human)


def register(subparsers: Any) -> None:
    """Add ``musiclm generate`` to the main parser."""
    gen = subparsers.add_parser("generate", help="text -> music (24 kHz WAV)",
                                description="Generate music from a text prompt with the bundled model (or --model).")
    gen.add_argument("prompt", nargs="?", help='what the music should be, e.g. "a calm piano piece"')
    gen.add_argument("-d", "--duration", type=float, default=10.0,
                     help="seconds of audio (default 10; at most 300; with --continue, includes the prompt)")
    gen.add_argument("-o", "--output", help="output .wav/.flac (default: from the prompt's first words; with -n, "
                                            "numbered)")
    gen.add_argument("--seed", type=int, default=0, help="random seed (same seed, same music)")
    add_sampling_arguments(gen)
    gen.add_argument("--draft", action="store_true", help="skip the fine stage and decode the coarse RVQ levels "
                     "alone: about 1.7x faster, less fine detail")
    gen.add_argument("-n", "--samples", type=int, default=1, help="how many pieces to generate")
    gen.add_argument("--best-of", type=int, default=1,
                     help="generate this many candidates per piece, keep the one closest to the prompt (MuLan)")
    gen.add_argument("--story", help='prompts that change over time: "0:a calm intro;15:drums come in;30:..."')
    gen.add_argument("--continue", dest="continue_from", metavar="FILE", help="continue this audio file")
    gen.add_argument("--melody", metavar="FILE", help="follow the tune of this audio file (hummed, sung, whistled "
                     "or played; looped when shorter than --duration)")
    gen.add_argument("--plot", action="store_true", help="also write a spectrogram PNG beside each file")
    gen.add_argument("--model", help=f"model folder (default: ${MODEL_ENV} or the bundled model)")
    gen.add_argument("--threads", type=int, help="CPU threads for torch")
    gen.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    add_device_flag(gen)
    add_json_flag(gen)
    gen.set_defaults(handler=_cmd_generate)
