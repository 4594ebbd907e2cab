"""How much a trained stage relies on its conditions: validation loss with them as trained, and without them.

    python benchmarks/condition_use.py --stage musiclm/pretrained/lm-coarse --tokens tokens/c1 [--windows 96] [--json]

On fixed windows of the token store's valid split (no condition dropout) the stage is scored four ways: as
trained; with its MuLan tokens replaced by the null tokens (what classifier-free guidance contrasts with);
with every window's MuLan tokens taken from another window (a wrong caption); and with the pitch contour
removed (stages that take one). Loss differences from the first row, in nats per target token, say how much
the stage listens to each condition: guidance can only amplify a difference the stage has learned.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from musiclm.lm.data import StageDataset, collate_sequences
from musiclm.lm.recipe import evaluate_stage, target_bounds
from musiclm.lm.stage import StageLM
from musiclm.tokenstore.store import TokenStore

MODES = ("as trained", "null MuLan tokens", "another window's MuLan tokens", "no pitch contour")


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", required=True, help="a stage folder (`musiclm lm export` output)")
    parser.add_argument("--tokens", required=True, help="a token store with a valid split")
    parser.add_argument("--windows", type=int, default=96)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--threads", type=int, default=1)
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
    rows = {mode: evaluate_stage(model, condition_batches(items, layout, mode, args.batch), layout.levels,
                                 target_bounds(layout))
            for mode in modes}
    base = rows["as trained"]["loss"]
    report = {"stage": args.stage, "windows": len(items),
              "rows": {mode: {**row, "loss_increase": row["loss"] - base} for mode, row in rows.items()}}
    if args.json:
        print(json.dumps(report, indent=1))
        return
    print(f"{config.stage} stage {args.stage}, {len(items)} valid windows of {args.tokens}\n")
    print("| conditions | loss | + nats | accuracy |\n|---|---|---|---|")
    for mode, row in report["rows"].items():
        print(f"| {mode} | {row['loss']:.4f} | {row['loss_increase']:+.4f} | {row['accuracy']:.3f} |")


if __name__ == "__main__":
    main()
