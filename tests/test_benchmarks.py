"""Every benchmark script imports (their timings are run by hand, but a renamed helper must not break them)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load_benchmark(script: str, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # they import each other's helpers
    spec = importlib.util.spec_from_file_location(f"benchmark_{Path(script).stem}", BENCHMARKS / script)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("script", sorted(p.name for p in BENCHMARKS.glob("*.py")))
def test_benchmark_imports_and_has_a_main(script, monkeypatch):
    module = load_benchmark(script, monkeypatch)
    assert callable(getattr(module, "main", None)), f"{script} has no main()"


def test_sampling_sweep_parses_settings(monkeypatch):
    module = load_benchmark("sampling_sweep.py", monkeypatch)
    assert module.parse_setting("") == {}
    assert module.parse_setting("temperature=0.9,0.8,0.4; cfg=5;top-k=50") == {
        "temperature": [0.9, 0.8, 0.4], "cfg": 5.0, "top_k": 50}
    assert module.parse_setting("best_of=4;cfg=5") == {"best_of": 4, "cfg": 5.0}
    for bad in ("temp=1", "cfg", "temperature=1,2", "best_of=2,2,2"):
        with pytest.raises(SystemExit):
            module.parse_setting(bad)


def test_sampling_sweep_resynthesis_rows_sample_with_the_setting(monkeypatch):
    module = load_benchmark("sampling_sweep.py", monkeypatch)
    calls = []

    class Recorder:
        sample_rate = 24_000

        def resynthesize(self, audio, rate, texts, duration, **kwargs):
            calls.append((audio.shape, list(texts), kwargs))
            return torch.zeros(audio.shape[0], 10), rate

    real = [np.zeros(30, np.float32), np.zeros(20, np.float32), np.zeros(25, np.float32)]
    texts = np.array(["a", "b", "c"], dtype=object)
    module.resynthesized(Recorder(), texts, real, 1.0, 2, {"temperature": [1.0, 0.5, 0.4]})(slice(0, 2), 3)
    shape, captions, kwargs = calls[0]
    assert shape == (2, 20) and captions == ["a", "b"]  # clips cut to the shortest of the batch
    assert kwargs == {"seed": 3, "keep_levels": 2, "temperature": [1.0, 0.5, 0.4]}
    module.resynthesized(Recorder(), texts, real, 1.0, 0)(slice(2, 3), 0)
    assert calls[1][2] == {"seed": 0, "keep_levels": 0}


def test_sampling_sweep_pairs_rows_with_another_models_report(monkeypatch):
    module = load_benchmark("sampling_sweep.py", monkeypatch)
    captions, seeds = ["a", "b", "c", "d"], [0, 1]
    baseline = {"captions": captions, "seeds": seeds,
                "settings": {"defaults": {"per_caption": [0.1, 0.2, 0.3, 0.4]}}}
    report = {"captions": captions, "seeds": seeds,
              "settings": {"defaults": {"per_caption": [0.2, 0.25, 0.45, 0.5]},
                           "cfg=5": {"per_caption": [0.1, 0.2, 0.3, 0.4]}}}
    module.compare_to_baseline(report, baseline)
    row = report["settings"]["defaults"]
    assert row["vs_baseline"] == pytest.approx(0.1)
    assert 0.0 < row["p_vs_baseline"] < 0.05
    assert "vs_baseline" not in report["settings"]["cfg=5"]  # no row of that name in the baseline
    for other in ({**baseline, "seeds": [0]}, {**baseline, "captions": ["a", "b", "c", "e"]}):
        with pytest.raises(SystemExit, match="other"):
            module.compare_to_baseline(report, other)


def test_condition_use_splits_the_loss_by_frame_and_level(monkeypatch):
    module = load_benchmark("condition_use.py", monkeypatch)
    ignore = module.IGNORE
    vocab, levels = 6, 2
    logits = torch.randn(2, 7, vocab)

    class FixedLogits(torch.nn.Module):
        def forward(self, tokens, aligned=None):
            return logits[: tokens.shape[0]]

    # row 0: 3 prefix positions, then 2 frames of 2 levels; row 1: 2 frames and one level of a third (dropped)
    labels = torch.tensor([[ignore, ignore, ignore, 1, 4, 2, 5], [ignore, ignore, 0, 3, 1, 4, 2]])
    batch = {"tokens": torch.zeros(2, 7, dtype=torch.long), "labels": labels}
    losses = module.frame_losses(FixedLogits(), [batch], levels)
    assert losses.shape == (2, 2, levels)
    log_probs = torch.log_softmax(logits, dim=-1)
    assert losses[0, 1, 0] == pytest.approx(float(-log_probs[0, 5, 2]), rel=1e-5)
    assert losses[1, 0, 1] == pytest.approx(float(-log_probs[1, 3, 3]), rel=1e-5)
    bands = module.by_frame({"as trained": losses, "null MuLan tokens": losses + np.array([0.5, 0.25])})
    assert list(bands["as trained"]) == ["0-1", "1-2"]
    assert bands["null MuLan tokens"]["1-2"] == pytest.approx([0.5, 0.25])
    assert bands["as trained"]["0-1"] == pytest.approx(losses[:, 0].mean(axis=0).tolist())


def test_mcc_segments_scores_each_segment_per_caption(monkeypatch, tmp_path):
    module = load_benchmark("mcc_segments.py", monkeypatch)
    assert module.parse_segment("0:2.5") == (0.0, 2.5)
    for bad in ("2", "3:1", "a:b", "-1:2"):
        with pytest.raises(SystemExit):
            module.parse_segment(bad)
    for name in ("caption000-seed0.wav", "caption000-seed1.wav", "caption002-seed0.wav", "caption040-seed0.wav",
                 "notes.wav"):
        (tmp_path / name).touch()
    found = module.saved_clips(tmp_path, captions=32)
    assert sorted(found) == [0, 2] and len(found[0]) == 2

    class MeanLevel:  # "similarity": the segment's mean sample value plus the caption's number
        def mulan_similarity(self, audio, texts):
            return torch.tensor([float(np.mean(a)) + float(t) for a, t in zip(audio, texts)])

    rate = 10
    ramp = np.arange(40, dtype=np.float32) / rate  # the value is the time in seconds
    clips = [[ramp, ramp + 1.0], [ramp]]
    scores = module.segment_scores(MeanLevel(), ["0", "5"], clips, (1.0, 2.0), rate)
    assert scores == pytest.approx([1.45 + 0.5, 5 + 1.45])  # caption 0: the mean over its two clips
    with pytest.raises(SystemExit, match="beyond"):
        module.segment_scores(MeanLevel(), ["0", "5"], clips, (5.0, 6.0), rate)
