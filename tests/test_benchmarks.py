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
    for bad in ("temp=1", "cfg", "temperature=1,2"):
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
