"""Prompt sets for ``musiclm eval``: what the systems are asked to make, and what their output is compared with.

Three sources are understood (:func:`load_prompts`):

- a **corpus folder** (``manifest.jsonl``): the captioned clips of one split (default ``test``). Each prompt
  has a caption, a reference clip (the audio the caption describes) and the clip's structured labels (tempo,
  key, mode, genre, instruments), so FAD and KLD compare each generated clip with its own reference and the
  adherence metrics have ground truth.
- a **MusicCaps-format CSV** (``musiccaps-public.csv``; the balanced 1,000-clip subset by default): captions
  only. With no per-prompt reference, FAD uses a *reference pool* instead (clips of a corpus's test split,
  ``reference_corpus``) and KLD and attribute adherence are not measured.
- a **prompt JSONL** (one object per line with ``id`` and ``caption`` or ``text``, as ``musiclm data musiccaps
  --captions-only`` writes): captions only, like the CSV.

Subsampling is deterministic: ``n`` prompts drawn without replacement by ``numpy.random.default_rng(seed)``,
kept in source order, so the same ``--n``/``--seed`` always give the same prompts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np

from musiclm.data.manifest import MANIFEST, SPLITS, read_jsonl, read_manifest
from musiclm.eval import EvalError

PromptKind = Literal["corpus", "text"]
T = TypeVar("T")
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+-]*$")


@dataclass
class Prompt:
    """One evaluation prompt: its caption and, for corpus prompts, the reference clip and its labels."""

    id: str  # also the file name of every clip made for it (OUT/audio/<system>/<id>.flac)
    text: str
    reference: str | None = None  # absolute path of the reference audio
    labels: dict[str, Any] = field(default_factory=dict)  # structured ground truth (bpm, key, mode, genre, parts)
    aspects: list[str] = field(default_factory=list)
    melody: str | None = None  # audio whose melody the output should follow (hook: no source sets it yet)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "reference": self.reference, "labels": self.labels,
                "aspects": self.aspects, "melody": self.melody}


@dataclass
class PromptSet:
    """The prompts of one evaluation, where they came from, and the reference audio they are compared with."""

    kind: PromptKind  # "corpus": per-prompt references and labels; "text": captions only
    source: str
    prompts: list[Prompt]
    available: int  # prompts in the source before subsampling
    seed: int
    corpus: str | None = None  # the corpus of the references, the reference pool and the retrieval library
    reference_pool: list[Prompt] = field(default_factory=list)  # text prompts: FAD reference clips
    split: str | None = None

    @property
    def paired(self) -> bool:
        """Whether every prompt has its own reference clip (so KLD and paired metrics apply)."""
        return bool(self.prompts) and all(p.reference for p in self.prompts)

    def reference_clips(self) -> list[Prompt]:
        """The clips FAD compares against: each prompt's own reference, or the reference pool."""
        return list(self.prompts) if self.paired else list(self.reference_pool)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "source": self.source, "count": len(self.prompts), "available": self.available,
                "seed": self.seed, "split": self.split, "corpus": self.corpus,
                "reference_set": ("per-prompt reference clips" if self.paired else
                                  f"pool of {len(self.reference_pool)} clips of the {self.corpus} test split"
                                  if self.reference_pool else "none"),
                "reference_count": len(self.reference_clips())}


def subsample(items: Sequence[T], n: int | None, seed: int) -> list[T]:
    """``n`` items drawn without replacement with ``default_rng(seed)``, in their original order (all when
    ``n`` is None or not smaller than the count)."""
    if n is not None and n < 1:
        raise EvalError(f"--n must be >= 1, got {n}")
    if n is None or n >= len(items):
        return list(items)
    pick = np.sort(np.random.default_rng(seed).choice(len(items), size=n, replace=False))
    return [items[int(i)] for i in pick]


def _check_id(prompt_id: str, where: str) -> str:
    if not _SAFE_ID.match(prompt_id) or len(prompt_id) > 200:
        raise EvalError(f"{where}: prompt id {prompt_id!r} cannot name a file (letters, digits, '.', '_', '-', "
                        "'=', '+' only)")
    return prompt_id


def corpus_prompts(corpus: str | os.PathLike[str], split: str = "test") -> list[Prompt]:
    """Every captioned clip of ``split`` as a prompt with its reference audio and labels (manifest order)."""
    root = Path(corpus).resolve()
    if split not in SPLITS:
        raise EvalError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    out = []
    for record in read_manifest(root, split):
        if not record.caption or not record.caption.strip():
            continue
        out.append(Prompt(id=_check_id(record.id, str(root)), text=record.caption.strip(),
                          reference=str(root / record.path), labels=dict(record.labels or {}),
                          aspects=list(record.aspects)))
    return out


def musiccaps_prompts(csv_path: str | os.PathLike[str], balanced: bool = True) -> list[Prompt]:
    """The captions of a MusicCaps-format CSV (the balanced subset by default) as text-only prompts."""
    from musiclm.data.musiccaps import read_musiccaps

    return [Prompt(id=_check_id(row.clip_id, str(csv_path)), text=row.caption, aspects=list(row.aspects))
            for row in read_musiccaps(csv_path, balanced=balanced) if row.caption.strip()]


def jsonl_prompts(path: str | os.PathLike[str]) -> list[Prompt]:
    """Prompts from a JSONL file of ``{"id", "caption" | "text", "aspects"?}`` objects (text only)."""
    out, seen = [], set()
    for number, item in enumerate(read_jsonl(path), 1):
        text = (item.get("caption") or item.get("text")) if isinstance(item, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise EvalError(f"{path}:{number}: each line needs a non-empty 'caption' or 'text'")
        prompt_id = str(item.get("id") or f"prompt-{number:05d}")
        if prompt_id in seen:
            raise EvalError(f"{path}:{number}: prompt id {prompt_id!r} appears twice")
        seen.add(prompt_id)
        out.append(Prompt(id=_check_id(prompt_id, str(path)), text=text.strip(),
                          aspects=[str(a) for a in item.get("aspects", []) if a]))
    return out


def load_prompts(source: str | os.PathLike[str], n: int | None = None, seed: int = 0, split: str = "test",
                 reference_corpus: str | os.PathLike[str] | None = None, balanced: bool = True,
                 n_reference: int | None = None) -> PromptSet:
    """A :class:`PromptSet` from a corpus folder, a MusicCaps CSV or a prompt JSONL (see the module docstring).

    ``n``/``seed`` subsample the prompts. For text-only sources, ``reference_corpus`` gives the reference pool
    (``n_reference`` clips of its test split, default as many as there are prompts, drawn with ``seed``) and the
    retrieval library; for a corpus source it defaults to the corpus itself.
    """
    path = Path(source)
    if path.is_dir():
        if not (path / MANIFEST).exists():
            raise EvalError(f"{path}: a prompt folder must be a corpus (with {MANIFEST})")
        everything = corpus_prompts(path, split)
        if not everything:
            raise EvalError(f"{path}: no captioned clips in split {split!r}")
        prompts = subsample(everything, n, seed)
        corpus = str(Path(reference_corpus).resolve()) if reference_corpus else str(path.resolve())
        return PromptSet("corpus", str(path.resolve()), prompts, len(everything), seed, corpus=corpus, split=split)
    if not path.is_file():
        raise EvalError(f"{path}: no such prompt file or corpus folder")
    if path.suffix.lower() == ".csv":
        everything = musiccaps_prompts(path, balanced)
    elif path.suffix.lower() in (".jsonl", ".json"):
        everything = jsonl_prompts(path)
    else:
        raise EvalError(f"{path}: prompts must be a corpus folder, a MusicCaps .csv or a .jsonl file")
    if not everything:
        raise EvalError(f"{path}: no prompts")
    prompts = subsample(everything, n, seed)
    pool: list[Prompt] = []
    corpus = None
    if reference_corpus is not None:
        corpus = str(Path(reference_corpus).resolve())
        candidates = corpus_prompts(corpus, "test")
        if not candidates:
            raise EvalError(f"{corpus}: no captioned test clips for the reference pool")
        pool = subsample(candidates, n_reference or len(prompts), seed)
    return PromptSet("text", str(path.resolve()), prompts, len(everything), seed, corpus=corpus,
                     reference_pool=pool, split=None)
