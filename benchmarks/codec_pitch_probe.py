"""How much pitch do the codec's codes carry? A probe from code frames to the dominant pitch class.

    python benchmarks/codec_pitch_probe.py --model DIR --corpus corpora/melody_pairs --json

A decoder can only give back what the encoder kept. For bare melodies (``labels.kind == "bare"`` in a
corpus made by ``musiclm melody pairs``; any corpus works with ``--all-clips``) every audible code frame
(50 per second) is labelled with the original audio's strongest pitch class (the chroma argmax of that frame),
and a small MLP learns the pitch class from the quantised latent (all levels, and level 1 alone) on the train
split and is scored on the test split. The same probe on the log-mel frame of the original audio is the
reference of what one frame of a plain spectrogram carries. The roundtrip's chroma agreement (the codec's
decoded audio against the original, :func:`musiclm.codec.metrics.chroma_agreement`) is reported beside it.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch
from sklearn.neural_network import MLPClassifier

from musiclm.audio import load_audio
from musiclm.bundled import default_model_dir
from musiclm.codec.api import Codec
from musiclm.codec.metrics import chroma_agreement
from musiclm.data.manifest import read_manifest
from musiclm.errors import MusicLMError
from musiclm.eval.adherence import chromagram
from musiclm.features import LogMel


def frames(codec: Codec, records: list, corpus: str, audible_db: float = -26.0) -> dict[str, np.ndarray]:
    """Per audible code frame: quantised latents (level 1, all), log-mel of the original, pitch-class label;
    and each clip's roundtrip chroma agreement."""
    rate, hop = codec.sample_rate, codec.hop_length
    mel = LogMel(rate, n_fft=1024, hop_length=hop, n_mels=64)
    out: dict[str, list[np.ndarray]] = {"level1": [], "all": [], "logmel": [], "label": [], "agreement": []}
    for record in records:
        wav, _ = load_audio(f"{corpus}/{record.path}", sample_rate=rate, allow_silent=True)
        audio = torch.from_numpy(wav)[None]
        with torch.no_grad():
            codes = codec.model.encode(audio)
            level1 = codec.model.quantizer.decode(codes[:, :1])[0].T.numpy()
            latent = codec.model.quantizer.decode(codes)
            decoded = codec.model.decoder(latent).squeeze(1)[:, : audio.shape[-1]]
            every = latent[0].T.numpy()
        chroma, rms = chromagram(wav, rate, 1024, hop)
        spectrum = mel(audio)[0].T.numpy()
        n = min(len(level1), chroma.shape[1], len(spectrum))
        keep = rms[:n] > 10 ** (audible_db / 20) * max(float(rms.max()), 1e-9)
        out["level1"].append(level1[:n][keep])
        out["all"].append(every[:n][keep])
        out["logmel"].append(spectrum[:n][keep])
        out["label"].append(chroma[:, :n].argmax(0)[keep])
        out["agreement"].append(chroma_agreement(audio, decoded, rate).numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="exported codec folder (default: $MUSICLM_CODEC or the bundled codec)")
    parser.add_argument("--corpus", required=True, help="a corpus folder; bare melodies of a melody-pair corpus "
                                                        "unless --all-clips")
    parser.add_argument("--all-clips", action="store_true", help="use every clip, not only bare melodies")
    parser.add_argument("--train-clips", type=int, default=300)
    parser.add_argument("--test-clips", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    codec = Codec.from_pretrained(args.model or default_model_dir("codec"))

    def pick(split: str, count: int) -> list:
        records = [r for r in read_manifest(args.corpus, split)
                   if args.all_clips or (r.labels or {}).get("kind") == "bare"]
        if not records:
            raise MusicLMError(f"{args.corpus}: no {'' if args.all_clips else 'bare '}clips in the {split} split")
        return records[:count]

    train, test = frames(codec, pick("train", args.train_clips), args.corpus), \
        frames(codec, pick("test", args.test_clips), args.corpus)
    result: dict[str, object] = {
        "model": str(args.model or default_model_dir("codec")), "corpus": args.corpus,
        "train_frames": int(len(train["label"])), "test_frames": int(len(test["label"])),
        "majority": float(np.bincount(test["label"], minlength=12).max() / len(test["label"])),
        "roundtrip_chroma_agreement": float(np.nanmean(test["agreement"])),
    }
    for feature in ("all", "level1", "logmel"):
        probe = MLPClassifier(hidden_layer_sizes=(256, 256), max_iter=40, early_stopping=True,
                              random_state=args.seed)
        probe.fit(train[feature], train["label"])
        result[f"probe_{feature}"] = float(probe.score(test[feature], test["label"]))
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
    else:
        print(f"{result['test_frames']} test frames; majority class {result['majority']:.3f}")
        for feature, name in (("all", "codes, all levels"), ("level1", "codes, level 1"),
                              ("logmel", "log-mel of the original (reference)")):
            print(f"pitch-class probe from {name}: {result[f'probe_{feature}']:.3f}")
        print(f"roundtrip chroma agreement: {result['roundtrip_chroma_agreement']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
