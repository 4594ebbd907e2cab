from __future__ import annotations

import numpy as np
import pytest
import torch

from musiclm.audio import save_audio
from musiclm.data.dataset import ClipDataset
from musiclm.data.manifest import ClipRecord, ManifestError, write_manifest


@pytest.fixture
def tiny_corpus(tmp_path, sine):
    records = []
    for i, split in enumerate(["train", "train", "test"]):
        rate = 24_000 if i != 1 else 16_000
        save_audio(tmp_path / f"a{i}.flac", sine(200.0 * (i + 1), 2.0, rate), rate)
        records.append(ClipRecord(id=f"c{i}", path=f"a{i}.flac", seconds=2.0, sample_rate=rate, split=split,
                                  source="test", caption=f"caption {i}"))
    write_manifest(tmp_path, records)
    return tmp_path


def test_crops_are_deterministic_per_epoch_and_index(tiny_corpus):
    data = ClipDataset(tiny_corpus, "train", crop_seconds=0.5, seed=1, with_text=True)
    assert len(data) == 2
    a, b = data[0], data[0]
    assert a["wav"].shape == (12_000,) and torch.equal(a["wav"], b["wav"]) and a["caption"] == "caption 0"
    data.set_epoch(1)
    assert not torch.equal(data[0]["wav"], a["wav"])  # another crop in the next epoch


def test_resamples_other_rates_and_full_clips(tiny_corpus):
    data = ClipDataset(tiny_corpus, "train", crop_seconds=None)
    wav = data[1]["wav"].numpy()
    assert abs(len(wav) - 48_000) <= 1
    assert abs(np.argmax(np.abs(np.fft.rfft(wav))) * 24_000 / len(wav) - 400.0) < 2.0


def test_empty_split_is_an_error(tiny_corpus):
    with pytest.raises(ManifestError, match="no clips in split 'valid'"):
        ClipDataset(tiny_corpus, "valid")
