"""How much a trained stage relies on its conditions: validation loss with them as trained, and without them.

    python benchmarks/condition_use.py --stage musiclm/pretrained/lm-coarse --tokens tokens/c1 [--windows 96] [--json]

On fixed windows of the token store's valid split (no condition dropout) the stage is scored four ways: as
trained; with its MuLan tokens replaced by the null tokens (what classifier-free guidance contrasts with);
with every window's MuLan tokens taken from another window (a wrong caption); and with the pitch contour
removed (stages that take one). Loss differences from the first row, in nats per target token, say how much
the stage listens to each condition: guidance can only amplify a difference the stage has learned.

``--by-frame`` also splits each difference by the target frame's place in the window and by RVQ level: a stage
that takes its timbre from the codes before needs its condition only at the window's first frames.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
import torch.nn.functional as F

from musiclm.lm.data import StageDataset, collate_sequences
from musiclm.lm.layout import IGNORE
from musiclm.lm.recipe import evaluate_stage, level_restricted, target_bounds
from musiclm.lm.stage import StageLM
from musiclm.tokenstore.store import TokenStore

MODES = ("as trained", "null MuLan tokens", "another window's MuLan tokens", "no pitch contour")
FRAME_BANDS = ((0, 1), (1, 3), (3, 10), (10, 25), (25, 50), (50, 100), (100, 250))


def condition_batches(items: list[dict], layout, mode: str, batch: int) -> list[dict[str, torch.Tensor]]:
    """The windows batched, with their conditions changed as ``mode`` says."""
    q = layout.spaces.mulan_levels
    out = []
    for start in range(0, len(items), batch):
        chunk = collate_sequences(items[start:start + batch])
        tokens = chunk["tokens"]
        if mode == "null MuLan tokens":
            tokens = layout.drop_condition(tokens, torch.ones(tokens.shape[0], dtype=torch.bool))
        elif mode == "another window's MuLan tokens":
            tokens = tokens.clone()
            tokens[:, :q] = tokens.roll(1, dims=0)[:, :q]
        elif mode == "no pitch contour" and "aligned" in chunk:
            chunk["aligned"] = torch.zeros_like(chunk["aligned"])
        chunk["tokens"] = tokens
        out.append(chunk)
    return out


@torch.no_grad()
def frame_losses(model, batches: list[dict[str, torch.Tensor]], levels: int,
                 bounds: tuple[torch.Tensor, torch.Tensor] | None = None) -> np.ndarray:
    """Every window's loss per target token as ``[windows, frames, levels]`` (targets are frame-major, ``levels``
    per frame; windows are cut to the shortest one's whole frames)."""
    model.eval()
    rows = []
    for batch in batches:
        labels = batch["labels"]
        logits = model(batch["tokens"], aligned=batch.get("aligned"))
        if bounds is not None:
            logits = level_restricted(logits, labels, bounds)
        nll = F.cross_entropy(logits.float().transpose(1, 2), labels.clamp(min=0), reduction="none")
        for row, mask in zip(nll, labels != IGNORE):
            targets = row[mask]
            rows.append(targets[: targets.numel() // levels * levels].reshape(-1, levels))
    frames = min(r.shape[0] for r in rows)
    return torch.stack([r[:frames] for r in rows]).numpy()


def by_frame(losses: dict[str, np.ndarray]) -> dict[str, dict[str, list[float]]]:
    """Mean loss per RVQ level in bands of frames: absolute for "as trained", the rise over it for the others."""
    base = losses["as trained"]
    out = {}
    for mode, arr in losses.items():
        diff = arr if mode == "as trained" else arr - base
        out[mode] = {f"{lo}-{min(hi, arr.shape[1])}": diff[:, lo:hi].mean(axis=(0, 1)).tolist()
                     for lo, hi in FRAME_BANDS if lo < arr.shape[1]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", required=True, help="a stage folder (`musiclm lm export` output)")
    parser.add_argument("--tokens", required=True, help="a token store with a valid split")
    parser.add_argument("--windows", type=int, default=96)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--by-frame", action="store_true", help="also split the differences by frame and level")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    stage = StageLM.from_pretrained(args.stage)
    config, layout = stage.config, stage.config.layout()
    if not layout.uses_mulan:
        raise SystemExit(f"the {config.stage} stage takes no MuLan tokens")
    dataset = StageDataset(TokenStore.open(args.tokens).select("valid"), config, seed=args.seed,
                           condition_dropout=False)
    picks = np.random.default_rng(args.seed).permutation(len(dataset))[:args.windows]
    items = [dataset[int(i)] for i in picks]
    model = stage.model.float()
    modes = [m for m in MODES if m != "no pitch contour" or config.contour_conditioning]
    batches = {mode: condition_batches(items, layout, mode, args.batch) for mode in modes}
    bounds = target_bounds(layout)
    rows = {mode: evaluate_stage(model, batches[mode], layout.levels, bounds) for mode in modes}
    base = rows["as trained"]["loss"]
    report = {"stage": args.stage, "windows": len(items),
              "rows": {mode: {**row, "loss_increase": row["loss"] - base} for mode, row in rows.items()}}
    if args.by_frame:
        report["by_frame"] = by_frame({mode: frame_losses(model, batches[mode], layout.levels, bounds)
                                       for mode in modes})
    if args.json:
        print(json.dumps(report, indent=1))
        return
    print(f"{config.stage} stage {args.stage}, {len(items)} valid windows of {args.tokens}\n")
    print("| conditions | loss | + nats | accuracy |\n|---|---|---|---|")
    for mode, row in report["rows"].items():
        print(f"| {mode} | {row['loss']:.4f} | {row['loss_increase']:+.4f} | {row['accuracy']:.3f} |")
    for mode, bands in report.get("by_frame", {}).items():
        what = "loss" if mode == "as trained" else "+ nats"
        print(f"\n{mode}, {what} by frame of the window\n\n| frames | "
              + " | ".join(f"level {q + 1}" for q in range(layout.levels)) + " |\n|---|"
              + "---|" * layout.levels)
        for band, values in bands.items():
            print(f"| {band} | " + " | ".join(f"{v:+.3f}" if mode != "as trained" else f"{v:.3f}"
                                              for v in values) + " |")


if __name__ == "__main__":
    main()
