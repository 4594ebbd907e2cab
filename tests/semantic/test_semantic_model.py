"""The semantic model: 25 frames/s, padding-invariant features, masking, truncation, config validation."""

from __future__ import annotations

import pytest
import torch
from semantic_testkit import tiny_model_config

from musiclm.config import ConfigError, merge, preset, to_dict
from musiclm.semantic.config import SemanticModelConfig
from musiclm.semantic.model import SemanticModel, count_parameters, frames_for, span_mask, truncate

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model() -> SemanticModel:
    torch.manual_seed(0)
    return SemanticModel(tiny_model_config()).eval()


@pytest.mark.parametrize("samples", [1, 959, 960, 961, 24_000, 24_001, 47_999])
def test_frames_are_ceil_of_samples_over_960(model, samples):
    states, valid = model.hidden_states(torch.randn(1, samples) * 0.1)
    assert states[-1].shape[1] == frames_for(samples, 960) == -(-samples // 960)
    assert bool(valid.all())


def test_padded_batch_matches_items_one_by_one(model):
    torch.manual_seed(1)
    a, b = torch.randn(24_000 + 333) * 0.1, torch.randn(2 * 24_000 + 17) * 0.1
    batch = torch.zeros(2, b.numel())
    batch[0, : a.numel()] = a
    batch[0, a.numel():] = 0.7  # garbage beyond the length must be ignored
    batch[1] = b
    with torch.no_grad():
        joint, valid = model.hidden_states(batch, torch.tensor([a.numel(), b.numel()]))
        alone_a, _ = model.hidden_states(a[None])
        alone_b, _ = model.hidden_states(b[None])
    n_a = alone_a[-1].shape[1]
    assert valid.sum(1).tolist() == [n_a, alone_b[-1].shape[1]]
    for layer in range(len(joint)):
        torch.testing.assert_close(joint[layer][0, :n_a], alone_a[layer][0], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(joint[layer][1], alone_b[layer][0], atol=1e-4, rtol=1e-4)


def test_forward_gives_one_logit_tensor_per_codebook_and_mask_changes_output():
    torch.manual_seed(0)
    model = SemanticModel(tiny_model_config(target_sizes=(8, 5))).eval()
    wav = torch.randn(2, 24_000) * 0.1
    logits, _ = model(wav)
    assert [tuple(x.shape) for x in logits] == [(2, 25, 8), (2, 25, 5)]
    mask = torch.zeros(2, 25, dtype=torch.bool)
    mask[:, 5:10] = True
    masked, _ = model(wav, mask=mask)
    assert not torch.allclose(masked[0][:, 5:10], logits[0][:, 5:10])


def test_span_mask_is_seeded_and_respects_valid_frames():
    a = span_mask(100, 0.1, 5, torch.Generator().manual_seed(3))
    b = span_mask(100, 0.1, 5, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and 0 < int(a.sum()) < 100
    short = span_mask(100, 0.5, 5, torch.Generator().manual_seed(3), valid_frames=20)
    assert not bool(short[20:].any()) and bool(short[:20].any())
    assert bool(span_mask(10, 1e-9, 3, torch.Generator().manual_seed(0)).any())  # never empty


def test_truncate_keeps_the_first_layers_exactly(model):
    small = truncate(model, 1)
    assert len(small.layers) == 1 and not small.has_heads
    wav = torch.randn(1, 12_345) * 0.1
    with torch.no_grad():
        full, _ = model.hidden_states(wav)
        cut, _ = small.hidden_states(wav)
    torch.testing.assert_close(cut[1], full[1])
    assert count_parameters(small) < count_parameters(model)
    with pytest.raises(RuntimeError, match="without prediction heads"):
        small(wav)


def test_presets_and_validation():
    small, paper = preset("semantic", "small"), preset("semantic", "paper")
    assert small.model.frame_rate == paper.model.frame_rate == 25
    assert paper.tokenizer.num_clusters == 1024 and paper.tokenizer.layer == 7
    assert count_parameters(SemanticModel(small.model)) < 10_000_000
    assert to_dict(merge(small, {"model.num_layers": 8}))["model"]["num_layers"] == 8
    with pytest.raises(ConfigError, match="mel_hop"):
        SemanticModelConfig(mel_hop=250).validate()
    with pytest.raises(ConfigError, match=r"tokenizer\.layer"):
        merge(small, {"tokenizer.layer": 9})
    with pytest.raises(ConfigError, match="clusters"):
        merge(small, {"targets.clusters": [8]})
