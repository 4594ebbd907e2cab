from __future__ import annotations

import pickle

import pytest
import torch
from torch import nn

from musiclm.train.checkpoint import CheckpointError, CheckpointManager, load_weights, save_weights


def test_weights_round_trip(tmp_path):
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    save_weights(model, tmp_path / "w.safetensors")
    other = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    load_weights(other, tmp_path / "w.safetensors")
    for a, b in zip(model.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)


def test_mismatched_or_corrupt_weights_are_clear_errors(tmp_path):
    save_weights(nn.Linear(3, 4), tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError, match="does not fit the model"):
        load_weights(nn.Linear(3, 5), tmp_path / "w.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="unreadable safetensors"):
        load_weights(nn.Linear(3, 4), tmp_path / "bad.safetensors")
    with pytest.raises(CheckpointError, match="no such weights file"):
        load_weights(nn.Linear(3, 4), tmp_path / "none.safetensors")


def test_read_safetensors_raises_the_callers_error(tmp_path):
    from musiclm.errors import MusicLMError
    from musiclm.train.checkpoint import read_safetensors

    class StoreError(MusicLMError):
        pass

    save_weights(nn.Linear(3, 4), tmp_path / "w.safetensors")
    assert set(read_safetensors(tmp_path / "w.safetensors")) == {"weight", "bias"}
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(StoreError, match=r"bad\.safetensors: unreadable safetensors"):
        read_safetensors(tmp_path / "bad.safetensors", StoreError)
    with pytest.raises(StoreError, match="no such weights file"):
        read_safetensors(tmp_path, StoreError)  # a folder is not a weights file


class _Exploit:
    def __reduce__(self):
        return (print, ("unpickled arbitrary code",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_trainer_state_never_unpickles_arbitrary_objects(tmp_path):
    manager = CheckpointManager(tmp_path)
    ckpt = manager.save(1, {"m": nn.Linear(2, 2)}, {"optimizers": {}}, {"data": {}})
    with open(ckpt.path / "trainer.pt", "wb") as handle:
        pickle.dump({"evil": _Exploit()}, handle)
    with pytest.raises(CheckpointError, match="unreadable trainer state"):
        CheckpointManager.load_trainer_state(ckpt)


def test_save_replaces_same_step_and_prunes(tmp_path):
    manager = CheckpointManager(tmp_path, keep=2)
    for step in (1, 2, 3, 3):
        manager.save(step, {"m": nn.Linear(2, 2)}, {}, {"data": {}})
    assert [c.step for c in manager.list()] == [2, 3]
    assert not [p for p in manager.root.iterdir() if p.name.startswith(".")]
