"""Two checks of what a generating model does with its inputs, measured on the audio it makes.

*Attribute pairs* (:func:`run_attribute_pairs`): the four prompt pairs of :mod:`musiclm.eval.prompt_pairs`
(fast/slow, drums/piano, major/minor, energetic/calm), each generated for several seeds and measured with a
signal measure that knows nothing of the model; a pair passes when the "high" prompt measures higher and a
one-sided Mann-Whitney U test gives p < 0.05.

*Melody following* (:func:`run_melody_generation`): held-out melodies of a melody-pairs corpus
(:mod:`musiclm.melody.pairs`), each given to the model with a style prompt that does not name the tune, are
generated twice with the same seed: with the melody and from the text alone. MusicGen's chroma metric
(:func:`~musiclm.eval.adherence.chroma_similarity`, the share of frames whose dominant pitch class agrees)
compares each output with the melody looped to the output's length. A model that follows the melody scores
higher with it than without it; a paired Wilcoxon signed-rank test says whether the difference is more than
seed noise, and the similarity of the melody to a *different* held-out melody shows what unrelated music
scores (the chance level).
"""

from __future__ import annotations

import io
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from musiclm.errors import MusicLMError

Progress = Callable[[int, int], None]
"""``(clips_done, clips_total)``."""

STYLE_PROMPTS: tuple[str, ...] = (
    "a jazz arrangement with piano and double bass",
    "an orchestral piece with strings",
    "a rock band with electric guitar and drums",
    "an electronic dance track with synthesizers and a four-on-the-floor beat",
    "a folk song with acoustic guitar and fiddle",
    "a solo piano piece",
    "a bossa nova with nylon-string guitar and soft percussion",
    "a brass band playing outdoors",
)
"""The style prompts of the melody check, dealt to the queries in turn (query ``i`` gets prompt ``i % 8``).
None names a tune, so whatever melody the output carries comes from the melody input."""

UNRELATED_ATTEMPTS = 8


class GenerationCheckError(MusicLMError):
    """A generation check cannot run with the given model, corpus or settings."""


class MelodyUnsupportedError(GenerationCheckError):
    """The model has no melody conditioning."""


class MelodyCorpusError(GenerationCheckError):
    """The folder is not a usable melody-pairs corpus."""


# ------------------------------------------------------------------------------------------ attribute pairs
def run_attribute_pairs(model: Any, seeds: Sequence[int] = tuple(range(8)), duration: float = 10.0,
                        batch_seeds: int = 1, progress: Progress | None = None,
                        sampling: dict[str, Any] | None = None) -> dict[str, Any]:
    """Generate the four attribute pairs' prompts for every seed and test each contrast.

    ``sampling`` (``temperature``, ``top_k``, ``top_p``, ``cfg``: what :meth:`MusicLM.generate` takes; None
    values keep the stage defaults) replaces the model's default sampling.

    Every call generates all eight prompts at once. With ``batch_seeds`` = k > 1, one call makes k samples
    per prompt (``num_samples=k``, seeded with the first seed of each group of k) and seed ``j`` of the group
    takes sample ``j``: faster, equally valid draws, but not the same clips as ``batch_seeds=1``.
    Returns ``{"pairs": [...], "passed", "total", "seeds", "duration", "batch_seeds", "seconds"}``.
    """
    from musiclm.eval.prompt_pairs import PAIRS, evaluate_pairs

    seeds = [int(s) for s in seeds]
    if not seeds:
        raise GenerationCheckError("give at least one seed")
    if len(set(seeds)) != len(seeds):
        raise GenerationCheckError(f"the seeds must differ, got {seeds}")
    if batch_seeds < 1:
        raise GenerationCheckError(f"batch_seeds must be >= 1, got {batch_seeds}")
    duration = model.check_duration(duration)
    sampling = {k: v for k, v in (sampling or {}).items() if v is not None}
    if sampling:
        model.sampling(**sampling)  # bad values fail here, before any generation
    groups = [seeds[i:i + batch_seeds] for i in range(0, len(seeds), batch_seeds)]
    group_of = {seed: group for group in groups for seed in group}
    cache: dict[int, np.ndarray] = {}
    prompts_per_call = 2 * len(PAIRS)

    def generate(prompts: list[str], seed: int) -> np.ndarray:
        if seed not in cache:
            group = group_of[seed]
            audio, _ = model.generate(prompts, duration, seed=group[0], num_samples=len(group), **sampling)
            rows = audio.numpy().reshape(len(prompts), len(group), -1)  # prompt-major
            for j, member in enumerate(group):
                cache[member] = rows[:, j]
        return cache.pop(seed)

    def seeds_done(done: int, total: int) -> None:
        if progress is not None:
            progress(done * prompts_per_call, total * prompts_per_call)

    started = time.perf_counter()
    results = evaluate_pairs(generate, model.sample_rate, seeds, progress=seeds_done)
    return {"pairs": [r.to_dict() for r in results], "passed": sum(r.passed for r in results),
            "total": len(results), "seeds": seeds, "duration": duration, "batch_seeds": batch_seeds,
            "sampling": sampling,
            "seconds": round(time.perf_counter() - started, 3)}


def pairs_table(results: dict[str, Any] | Sequence[dict[str, Any]],
                sides: tuple[str, str] = ("high prompt", "low prompt")) -> str:
    """The Markdown table of :func:`~musiclm.eval.prompt_pairs.format_table` for a :func:`run_attribute_pairs`
    result (or a list of pair dicts, such as one side of :func:`run_reference_pairs`)."""
    from musiclm.eval.prompt_pairs import PairResult, format_table

    pairs = results["pairs"] if isinstance(results, dict) else results
    return format_table([PairResult(p["name"], p["measure"], p["high_prompt"], p["low_prompt"], p["high_values"],
                                    p["low_values"], p["p_value"], p["passed"], p.get("also", {}))
                         for p in pairs], sides)


def run_reference_pairs(corpus: str | os.PathLike[str], codec: Any = None, clips: int = 16, split: str = "test",
                        duration: float = 10.0, seed: int = 0, progress: Progress | None = None) -> dict[str, Any]:
    """The pairs' measures on real corpus clips that carry each attribute (chosen by their labels, see
    :func:`~musiclm.eval.prompt_pairs.reference_clips`): whether a measure separates real music at all
    (``"real"``) and, given a codec, whether it still does after the codec's roundtrip (``"codec"``: the best a
    model generating that codec's tokens could do). Each clip's first ``duration`` seconds are measured.

    Returns ``{"real": [pair dicts], "codec": [...] (with a codec), "clips": {pair: [high, low]}, "corpus",
    "split", "seconds"}``; a pair's dict has the keys of :meth:`~musiclm.eval.prompt_pairs.PairResult.to_dict`
    with the prompts replaced by the label sides.
    """
    from musiclm import SAMPLE_RATE
    from musiclm.audio import load_audio
    from musiclm.data.manifest import ManifestError, read_manifest
    from musiclm.eval.prompt_pairs import PAIRS, measure_pair, reference_clips

    started = time.perf_counter()
    try:
        records = read_manifest(corpus, split)
    except ManifestError as exc:
        raise GenerationCheckError(f"{corpus}: {exc}") from None
    if clips < 2:
        raise GenerationCheckError(f"the reference needs at least 2 clips a side, got {clips}")
    rng = np.random.default_rng(seed)
    rate = codec.sample_rate if codec is not None else SAMPLE_RATE
    chosen = [reference_clips([r.labels for r in records], pair, clips, rng) for pair in PAIRS]
    for pair, (high, low) in zip(PAIRS, chosen, strict=True):
        if len(high) < 2 or len(low) < 2:
            raise GenerationCheckError(f"{corpus} ({split}) has {len(high)} clips labelled for the high side and "
                                       f"{len(low)} for the low side of the {pair.name} pair; 2 a side are needed")
    total = sum(len(h) + len(lo) for h, lo in chosen)
    done = 0
    out: dict[str, Any] = {"real": [], "clips": {}, "corpus": str(corpus), "split": split}
    if codec is not None:
        out["codec"] = []
    for pair, sides in zip(PAIRS, chosen, strict=True):
        real: list[list[np.ndarray]] = [[], []]
        coded: list[list[np.ndarray]] = [[], []]
        for side, indices in enumerate(sides):
            for index in indices:
                wav = load_audio(Path(corpus) / records[index].path, rate)[0][: int(duration * rate)]
                real[side].append(wav)
                if codec is not None:
                    coded[side].append(codec.roundtrip(wav, rate, bitrate=None))
                done += 1
                if progress is not None:
                    progress(done, total)
        names = {"high_prompt": f"{pair.name}: high-side clips", "low_prompt": f"{pair.name}: low-side clips"}
        out["real"].append({**measure_pair(pair, *real, rate).to_dict(), **names})
        if codec is not None:
            out["codec"].append({**measure_pair(pair, *coded, rate).to_dict(), **names})
        out["clips"][pair.name] = [[records[i].id for i in side] for side in sides]
    out["seconds"] = round(time.perf_counter() - started, 3)
    return out


def _wrap(text: str, width: int = 18) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)) or text


def plot_pairs(results: dict[str, Any] | Sequence[dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    """One PNG, one panel per pair: per-seed values of the high and the low prompt (dots) and their means
    (bars), titled with the p-value and the verdict. ``results`` is a :func:`run_attribute_pairs` result or its
    ``"pairs"`` list. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from musiclm.fileio import atomic_write_bytes

    pairs = list(results["pairs"] if isinstance(results, dict) else results)
    if not pairs:
        raise GenerationCheckError("no pair results to plot")
    fig, axes = plt.subplots(1, len(pairs), figsize=(3.8 * len(pairs), 4.4), dpi=100, squeeze=False)
    try:
        for ax, pair in zip(axes[0], pairs, strict=True):
            for x, key, colour in ((0, "high_values", "tab:red"), (1, "low_values", "tab:blue")):
                values = np.asarray(pair[key], dtype=float)
                offsets = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(1)
                ax.scatter(x + offsets, values, s=22, color=colour, alpha=0.75, zorder=3)
                ax.hlines(values.mean(), x - 0.25, x + 0.25, color="black", linewidth=2.0, zorder=4)
            ax.set_xticks([0, 1])
            ax.set_xticklabels([_wrap(pair["high_prompt"]), _wrap(pair["low_prompt"])], fontsize=7)
            ax.set_xlim(-0.6, 1.6)
            ax.set_ylabel(pair["measure"], fontsize=9)
            verdict = "passes" if pair["passed"] else "fails"
            ax.set_title(f"{pair['name']}: p = {pair['p_value']:.3g} ({verdict})", fontsize=10)
            ax.grid(axis="y", alpha=0.3)
        fig.suptitle("Prompt pairs: per-seed values (dots) and means (bars); high prompt red, low prompt blue",
                     fontsize=10)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
    finally:
        plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


# -------------------------------------------------------------------------------------------- melody queries
@dataclass(frozen=True)
class MelodyQuery:
    """One held-out melody to generate with: the version given to the model, the prompt, and a version of a
    different melody (another group, so never its hard negative) for the chance-level reference."""

    melody_id: str
    path: Path
    prompt: str
    unrelated_id: str
    unrelated_path: Path

    def to_dict(self) -> dict[str, str]:
        return {"melody_id": self.melody_id, "path": str(self.path), "prompt": self.prompt,
                "unrelated_id": self.unrelated_id, "unrelated_path": str(self.unrelated_path)}


def _query_rank(labels: dict[str, Any]) -> int:
    """0: a bare hum/voice/whistle/flute-like lead; 1: such a lead in an arrangement; 2: anything else."""
    from musiclm.melody.pairs import HUM_LIKE_PROGRAMS

    program = labels.get("lead_program", labels.get("program"))
    hum_like = program is not None and int(program) in HUM_LIKE_PROGRAMS
    if hum_like and labels.get("kind") == "bare":
        return 0
    return 1 if hum_like else 2


def melody_queries(pairs_corpus_dir: str | os.PathLike[str], n: int, split: str = "test",
                   rng: np.random.Generator | None = None) -> list[MelodyQuery]:
    """``n`` distinct melodies of ``split`` of a melody-pairs corpus, chosen with ``rng``.

    Each query's audio is the version whose lead is hum-, voice-, whistle- or flute-like (a bare one first)
    when the manifest records the lead, else the melody's first version; its prompt is ``STYLE_PROMPTS[i % 8]``.
    """
    from musiclm.data.manifest import ManifestError, read_manifest
    from musiclm.melody.pairs import PairError, read_pairs

    rng = rng if rng is not None else np.random.default_rng(0)
    folder = Path(pairs_corpus_dir)
    hint = "make one with `musiclm melody pairs --out DIR --melodies N`"
    if not folder.is_dir():
        raise MelodyCorpusError(f"{folder}: no such folder ({hint})")
    if not (folder / "manifest.jsonl").is_file():
        raise MelodyCorpusError(f"{folder} is not a melody-pairs corpus: it has no manifest.jsonl ({hint})")
    if n < 1:
        raise GenerationCheckError(f"ask for at least one melody, got {n}")
    try:
        pairs = read_pairs(folder, split)
        labels = {r.id: r.labels or {} for r in read_manifest(folder, split)}
    except (PairError, ManifestError) as exc:
        raise MelodyCorpusError(f"{folder} is not a usable melody-pairs corpus: {exc}") from None
    melodies = pairs.melody_ids
    if not melodies:
        raise MelodyCorpusError(f"{folder}: no melody of split {split!r} has two versions; a melody-pairs corpus "
                                f"holds each melody in several versions ({hint})")
    if n > len(melodies):
        raise GenerationCheckError(f"{folder}: split {split!r} holds {len(melodies)} melodies, fewer than the "
                                   f"{n} asked for")
    groups = {pairs.clips[idx[0]].group_id for idx in pairs.melodies.values()}
    if len(groups) < 2:
        raise MelodyCorpusError(f"{folder}: split {split!r} needs melodies of at least two groups (the unrelated "
                                "reference compares a melody with another one)")
    chosen = [melodies[i] for i in rng.permutation(len(melodies))[:n]]
    queries = []
    for i, melody in enumerate(chosen):
        versions = [pairs.clips[j] for j in pairs.melodies[melody]]
        query = min(versions, key=lambda c: (_query_rank(labels.get(c.id, {})), c.version))
        others = [m for m in melodies if pairs.clips[pairs.melodies[m][0]].group_id != query.group_id]
        other = others[int(rng.integers(len(others)))]
        other_versions = pairs.melodies[other]
        unrelated = pairs.clips[other_versions[int(rng.integers(len(other_versions)))]]
        queries.append(MelodyQuery(melody, query.path, STYLE_PROMPTS[i % len(STYLE_PROMPTS)], unrelated.melody_id,
                                   unrelated.path))
    return queries


# ------------------------------------------------------------------------------------------ melody generation
def loop_to(wav: np.ndarray, length: int) -> np.ndarray:
    """``wav`` repeated (as the model repeats a melody) and cut to ``length`` samples."""
    wav = np.asarray(wav, dtype=np.float32).reshape(-1)
    if wav.size == 0:
        raise GenerationCheckError("cannot loop empty audio")
    return np.tile(wav, -(-length // wav.size))[:length]


def _stats(values: Sequence[float]) -> dict[str, float | int]:
    array = np.asarray(values, dtype=float)
    return {"mean": float(array.mean()), "std": float(array.std()), "n": int(array.size)}


def _wilcoxon_greater(with_melody: Sequence[float], text_only: Sequence[float]) -> float:
    """One-sided paired Wilcoxon signed-rank p-value that ``with_melody`` > ``text_only`` (1.0 without any
    difference)."""
    from scipy.stats import wilcoxon

    a, b = np.asarray(with_melody, dtype=float), np.asarray(text_only, dtype=float)
    if np.allclose(a, b):
        return 1.0
    try:
        return float(wilcoxon(a, b, alternative="greater", zero_method="wilcox").pvalue)
    except ValueError:
        return 1.0


def _batches(lengths: Sequence[int], size: int) -> list[list[int]]:
    """Indices in order, in batches of up to ``size`` whose melodies have the same length (so they stack)."""
    out: list[list[int]] = []
    open_batch: dict[int, list[int]] = {}
    for index, length in enumerate(lengths):
        batch = open_batch.get(length)
        if batch is None or len(batch) >= size:
            batch = open_batch[length] = []
            out.append(batch)
        batch.append(index)
    return out


def run_melody_generation(model: Any, queries: Sequence[MelodyQuery], duration: float = 10.0,
                          seeds: Sequence[int] = (0,), batch: int = 4,
                          progress: Progress | None = None, ceilings: bool = False) -> dict[str, Any]:
    """Generate every query with and without its melody (same prompt, same seed) and compare both with the
    melody by chroma similarity; see the module docstring.

    Returns per-row values (``rows``: one per query and seed), ``with_melody`` / ``text_only`` / ``unrelated``
    summaries (mean, std, n), ``ratio`` (mean with / mean without; None when the latter is 0) and
    ``wilcoxon_p`` (paired, one-sided: with > without). ``ceilings`` adds what the parts after the semantic
    stage keep of the melody: ``codec`` (the looped melody through the codec and back) and ``resynthesis``
    (the coarse and fine stages rendering the melody's own semantic tokens, :meth:`MusicLM.resynthesize`,
    same prompt and seed): the best the semantic stage could reach by generating the melody's tokens.
    """
    from musiclm.audio import load_audio
    from musiclm.eval.adherence import chroma_similarity

    if not getattr(model, "supports_melody", False):
        raise MelodyUnsupportedError("this model has no melody conditioning (its semantic stage was trained "
                                     "without melody tokens, or its folder has no melody/ model); train or "
                                     "export one with melody tokens to run the melody check")
    queries = list(queries)
    if not queries:
        raise GenerationCheckError("no melody queries given")
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise GenerationCheckError(f"give one or more distinct seeds, got {seeds}")
    if batch < 1:
        raise GenerationCheckError(f"batch must be >= 1, got {batch}")
    duration = model.check_duration(duration)
    sr = model.sample_rate
    length = int(round(duration * sr))
    melodies = [load_audio(q.path, sr)[0] for q in queries]
    unrelated_values = [chroma_similarity(loop_to(m, length), loop_to(load_audio(q.unrelated_path, sr)[0], length),
                                          sr) for m, q in zip(melodies, queries, strict=True)]
    batches = _batches([m.size for m in melodies], batch)
    total = (3 if ceilings else 2) * len(queries) * len(seeds)
    done = 0
    codec_values: list[float] = []
    if ceilings:
        for m in melodies:
            looped = loop_to(m, length)
            back = model.codec.decode(model.codec.encode(looped, sr, bitrate=None), length=length)
            codec_values.append(chroma_similarity(looped, back[0].float().cpu().numpy(), sr))
    resynthesis: dict[tuple[int, int], float] = {}
    started = time.perf_counter()
    scores: dict[tuple[int, int], tuple[float, float]] = {}
    for seed in seeds:
        for indices in batches:
            prompts = [queries[i].prompt for i in indices]
            stacked = np.stack([melodies[i] for i in indices])
            with_audio, _ = model.generate_with_melody(prompts, stacked, sr, duration, seed=seed)
            done += len(indices)
            if progress is not None:
                progress(done, total)
            text_audio, _ = model.generate(prompts, duration, seed=seed)
            done += len(indices)
            if progress is not None:
                progress(done, total)
            for row, i in enumerate(indices):
                reference = loop_to(melodies[i], with_audio.shape[-1])
                scores[(i, seed)] = (chroma_similarity(reference, with_audio[row].numpy(), sr),
                                     chroma_similarity(reference, text_audio[row].numpy(), sr))
            if ceilings:
                again, _ = model.resynthesize(stacked, sr, prompts, duration, seed=seed)
                done += len(indices)
                if progress is not None:
                    progress(done, total)
                for row, i in enumerate(indices):
                    reference = loop_to(melodies[i], again.shape[-1])
                    resynthesis[(i, seed)] = chroma_similarity(reference, again[row].numpy(), sr)
    rows = []
    for i, query in enumerate(queries):
        for seed in seeds:
            with_value, text_value = scores[(i, seed)]
            rows.append({"melody_id": query.melody_id, "prompt": query.prompt, "path": str(query.path),
                         "seed": seed, "with_melody": with_value, "text_only": text_value,
                         "unrelated_id": query.unrelated_id, "unrelated": unrelated_values[i]})
            if ceilings:
                rows[-1].update({"codec": codec_values[i], "resynthesis": resynthesis[(i, seed)]})
    with_values = [r["with_melody"] for r in rows]
    text_values = [r["text_only"] for r in rows]
    with_stats, text_stats = _stats(with_values), _stats(text_values)
    ratio = with_stats["mean"] / text_stats["mean"] if text_stats["mean"] > 0 else None
    extra: dict[str, Any] = {}
    if ceilings:
        extra = {"codec": _stats(codec_values), "resynthesis": _stats([r["resynthesis"] for r in rows])}
    return {
        **extra,
        "rows": rows,
        "with_melody": with_stats,
        "text_only": text_stats,
        "unrelated": _stats(unrelated_values),
        "ratio": ratio,
        "wilcoxon_p": _wilcoxon_greater(with_values, text_values),
        "test": "paired Wilcoxon signed-rank over (melody, seed) rows, one-sided: with melody > text only",
        "metric": "chroma similarity (share of frames whose dominant pitch class agrees with the looped melody)",
        "queries": [q.to_dict() for q in queries],
        "seeds": seeds,
        "duration": duration,
        "batch": batch,
        "seconds": round(time.perf_counter() - started, 3),
    }


def melody_table(result: dict[str, Any]) -> str:
    """A Markdown table of a :func:`run_melody_generation` result."""
    def cell(stats: dict[str, Any]) -> str:
        return f"{stats['mean']:.3f} ± {stats['std']:.3f}"

    ratio = result["ratio"]
    ratio_text = "n/a (text only scores 0)" if ratio is None or not math.isfinite(ratio) else f"{ratio:.2f}"
    lines = ["| condition | chroma similarity: mean ± sd | n |", "|---|---|---|",
             f"| with melody | {cell(result['with_melody'])} | {result['with_melody']['n']} |",
             f"| text only (same prompt and seed) | {cell(result['text_only'])} | {result['text_only']['n']} |",
             f"| unrelated melody (chance level) | {cell(result['unrelated'])} | {result['unrelated']['n']} |"]
    if "codec" in result:
        lines += [f"| ceiling: the melody through the codec | {cell(result['codec'])} | {result['codec']['n']} |",
                  f"| ceiling: acoustic stages rendering the melody's semantic tokens | "
                  f"{cell(result['resynthesis'])} | {result['resynthesis']['n']} |"]
    lines += ["",
             f"Ratio with / without melody: {ratio_text}; paired Wilcoxon signed-rank p (one-sided, with > without): "
             f"{result['wilcoxon_p']:.3g}."]
    return "\n".join(lines)
