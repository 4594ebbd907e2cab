"""The paper's ablation: MuLan text-audio similarity (MCC) with and without the semantic stage.

    python benchmarks/semantic_ablation.py --model MODEL --ablation-coarse runs/coarse-nosem-export \\
        --prompts /work/corpora/synth --n 32 --duration 10 --seeds 2

``--ablation-coarse`` is a coarse stage trained on the same token store with
``--set model.semantic_conditioning=false`` (it sees MuLan tokens only); without it the script measures the
full model against the real clips only (the generation issue's "MCC at least 70 % of real clips").
Both pipelines share every other part and the prompts and seeds; the script prints MCC (mean cosine
between the MuLan text embedding of the prompt and the MuLan audio embedding of the generated clip) for
each, and for the real clips of the prompts (the ceiling). ``--judge MULAN`` measures with another MuLan than
the one that conditions generation (to compare two conditioning MuLans on one yardstick).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from musiclm.audio import load_audio
from musiclm.data.manifest import read_manifest
from musiclm.generate_cli import add_sampling_arguments, sampling_from_args
from musiclm.lm.stage import StageLM
from musiclm.mulan.api import MuLan
from musiclm.pipeline import MusicLM


def corpus_prompts(corpus: str, n: int, seed: int) -> tuple[list[str], list[np.ndarray]]:
    records = [r for r in read_manifest(corpus, "test") if (r.caption or "").strip()]
    picks = np.random.default_rng(seed).permutation(len(records))[:n]
    chosen = [records[int(i)] for i in picks]
    audio = [load_audio(f"{corpus}/{r.path}")[0] for r in chosen]
    return [r.caption for r in chosen], audio


def mcc(mulan: MuLan, texts: list[str], audio: torch.Tensor | list[np.ndarray]) -> float:
    text = mulan.embed_text(texts)
    sound = mulan.embed_audio(audio)
    return float((text * sound).sum(dim=-1).mean())


def resynthesize(model: MusicLM, audio: list[np.ndarray]) -> list[np.ndarray]:
    """Each clip encoded and decoded by the model's codec at its full bit rate: what the stages could at best
    reproduce, so the MCC ceiling the codec leaves."""
    out = []
    with torch.inference_mode():
        for wav in audio:
            codes = model.codec.encode(wav[None], model.sample_rate, bitrate=None)
            out.append(model.codec.decode(codes, length=len(wav))[0].float().cpu().numpy())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--ablation-coarse", help="coarse stage folder trained without semantics (optional)")
    parser.add_argument("--prompts", required=True, help="corpus folder (test split captions)")
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--judge", help="measure with this MuLan folder instead of the model's own (which still "
                                            "conditions generation): separates conditioning from the yardstick")
    parser.add_argument("--json", action="store_true")
    add_sampling_arguments(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sampling = sampling_from_args(args)
    full = MusicLM.from_pretrained(args.model)
    systems = [("with semantic stage", full)]
    if args.ablation_coarse:
        ablation = full.with_stage(StageLM.from_pretrained(args.ablation_coarse, stage="coarse"))
        if ablation.stages["coarse"].config.semantic_conditioning:
            raise SystemExit(f"{args.ablation_coarse} was trained with semantic conditioning; not an ablation")
        systems.append(("without semantic stage", ablation))
    judge = MuLan.from_pretrained(args.judge) if args.judge else full.mulan
    texts, real = corpus_prompts(args.prompts, args.n, 0)
    results = {"real clips (ceiling)": mcc(judge, texts, real),
               "real clips through the codec (the codec's ceiling)": mcc(judge, texts, resynthesize(full, real))}
    for name, model in systems:
        scores = []
        for seed in range(args.seeds):
            for start in range(0, len(texts), args.batch):
                chunk = texts[start:start + args.batch]
                audio, _ = model.generate(chunk, duration=args.duration, seed=seed, **sampling)
                scores.append(mcc(judge, chunk, audio) * len(chunk))
        results[name] = float(np.sum(scores) / (len(texts) * args.seeds))
    real_mcc = results["real clips (ceiling)"]
    ratio = results["with semantic stage"] / real_mcc if real_mcc else None
    if args.json:
        print(json.dumps({"prompts": len(texts), "seeds": args.seeds, "duration": args.duration, "sampling": sampling,
                          "mcc": results,
                          "generated_over_real": ratio, "judge": args.judge or "the model's own MuLan"}))
        return
    print(f"{len(texts)} test captions x {args.seeds} seed(s), {args.duration:g} s each")
    print("| system | MCC (MuLan text-audio cosine) |\n|---|---|")
    for name, value in results.items():
        print(f"| {name} | {value:.4f} |")
    if ratio is not None:
        print(f"\ngenerated (with semantic stage) / real clips: {ratio:.1%}")


if __name__ == "__main__":
    main()
