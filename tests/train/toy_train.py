"""Run the toy recipe from the command line (plain python or torchrun), for subprocess tests.

Every rank writes its final parameters to ``<run>/final-rank<R>.safetensors`` so tests can compare ranks.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from safetensors.torch import save_file
from toy_recipe import ToyRecipe

from musiclm.train.config import OptimizerConfig, TrainConfig
from musiclm.train.distributed import gather_with_grad, setup_distributed, teardown_distributed
from musiclm.train.engine import Trainer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("--max-steps", type=int, default=40)
    parser.add_argument("--checkpoint-every", type=int, default=10)
    parser.add_argument("--budget-steps", type=int)
    parser.add_argument("--step-sleep", type=float, default=0.0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--two-phases", action="store_true")
    parser.add_argument("--ema", type=float)
    args = parser.parse_args()

    ctx = setup_distributed("cpu")
    config = TrainConfig(
        max_steps=args.max_steps, batch_size=args.batch_size, checkpoint_every=args.checkpoint_every,
        budget_steps=args.budget_steps, keep_checkpoints=2, log_every=5, sample_every=1000, eval_every=1000,
        device="cpu", ema_decay=args.ema, progress=False,
        optimizer=OptimizerConfig(lr=1e-2, warmup_steps=5),
    )
    recipe = ToyRecipe(two_phases=args.two_phases, step_sleep=args.step_sleep)
    trainer = Trainer(recipe, config, args.run_dir, dist_context=ctx)
    result = trainer.fit()

    import torch

    # this rank's own in-memory parameters (not re-read from the checkpoint)
    tensors = {k: v.detach().clone().contiguous() for k, v in trainer.models["net"].state_dict().items()}
    # exercise the cross-rank gather used by contrastive losses
    local = torch.full((2, 3), float(ctx.rank), requires_grad=True)
    gathered = gather_with_grad(local)
    gathered.sum().backward()
    tensors["gathered"] = gathered.detach()
    tensors["gathered_grad"] = local.grad
    save_file(tensors, str(Path(args.run_dir) / f"final-rank{ctx.rank}.safetensors"))
    if ctx.is_main:
        print(json.dumps({"step": result.step, "reason": result.reason, "logs": result.last_logs}))
    teardown_distributed()


if __name__ == "__main__":
    main()
