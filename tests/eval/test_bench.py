"""``musiclm bench`` on the tiny random model: measurements, the MusicGen peer, the table, memory, CLI."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from musiclm.eval import EvalError, cli
from musiclm.eval.bench import PeakMemory, build_peer, format_bench, peer_parameters, peer_spec_for, run_bench

pytestmark = pytest.mark.usefixtures("one_thread")


def test_peer_matches_the_stages_in_width_and_total_depth(tiny_musiclm):
    spec = peer_spec_for(tiny_musiclm, max_seconds=60.0)
    configs = [tiny_musiclm.stages[s].config.transformer for s in ("semantic", "coarse", "fine")]
    assert spec.hidden_size == 32 and spec.num_hidden_layers == sum(c.depth for c in configs) == 6
    assert spec.max_position_embeddings >= 60 * 50 + 3
    peer = build_peer(spec, torch.device("cpu"))
    assert peer.decoder.config.num_codebooks == 4 and peer.config.audio_encoder.frame_rate == 50
    assert peer_parameters(peer)["decoder"] > 0


def test_bench_measures_both_models(tiny_musiclm):
    report = run_bench(tiny_musiclm, batches=[1, 2], seconds=[0.4], warmup=False)
    assert [(r["batch"], r["seconds"]) for r in report["runs"]] == [(1, 0.4), (2, 0.4)]
    for run in report["runs"]:
        ours, peer = run["musiclm"], run["peer"]
        assert ours["rtf"] > 0 and peer["rtf"] > 0 and run["ratios"]["rtf"] == pytest.approx(ours["rtf"] / peer["rtf"])
        for stage in ("semantic", "coarse", "fine"):
            assert ours[f"{stage}_tok_per_s"] > 0
        # 0.4 s: 10 semantic + 20 x 4 coarse + 20 x 8 fine tokens per row.
        assert (ours["semantic_tokens"], ours["coarse_tokens"], ours["fine_tokens"]) == (
            10 * run["batch"], 80 * run["batch"], 160 * run["batch"])
        assert peer["steps"] == 20 + 3 and peer["lm_tokens"] == 23 * 4 * run["batch"]
        assert peer["samples"] == int(0.4 * 32_000)
    for row in report["codec"]:
        assert row["musiclm"]["encode_rtf"] > 0 and row["peer"]["decode_rtf"] > 0
    table = format_bench(report)
    assert "| 0.4 | 2 |" in table and "MusicGen peer" in table and "RTF ratio" in table
    json.dumps(report)  # JSON-ready


def test_bench_rejects_bad_grids(tiny_musiclm):
    with pytest.raises(EvalError):
        run_bench(tiny_musiclm, batches=[0])
    with pytest.raises(EvalError):
        run_bench(tiny_musiclm, seconds=[-1.0])


def test_peak_memory_sees_a_large_allocation():
    with PeakMemory(torch.device("cpu"), interval=0.001) as memory:
        block = np.ones(80 * 2**20 // 8)  # 80 MiB, touched
        block += 1.0
        import time

        time.sleep(0.05)
    del block
    assert memory.peak_mb is not None and memory.peak_mb >= 60


def test_bench_cli_without_peer(tiny_model_dir, capsys):
    parser = argparse.ArgumentParser(prog="musiclm")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", "--model", str(tiny_model_dir), "--batch", "1", "--seconds", "0.2",
                              "--no-peer", "--threads", "1", "--json"])
    args.handler(args)
    report = json.loads(capsys.readouterr().out)
    assert report["musiclm"]["label"] == str(tiny_model_dir) and "peer" not in report
    assert report["runs"][0]["musiclm"]["rtf"] > 0 and "ratios" not in report["runs"][0]
