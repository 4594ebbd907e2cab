"""Token stores made with a melody model: melody tokens per clip, identity, and the semantic stage's spaces."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from test_build import make_models, write_corpus  # noqa: E402

from musiclm.random_model import _random_melody  # noqa: E402
from musiclm.tokenstore import TokenStore  # noqa: E402
from musiclm.tokenstore.build import TokenizeError, build_store, store_status  # noqa: E402
from musiclm.tokenstore.store import TokenStoreError  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

SR = 24_000


@pytest.fixture(scope="module")
def melody_models():
    models = make_models(0)
    return replace(models, melody=_random_melody("tiny", torch.Generator().manual_seed(0)))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus"), lengths=(1.0, 2.0, 3.1, 1.5, 2.5))


@pytest.fixture(scope="module")
def store_dir(melody_models, corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("store")
    build_store([corpus], out, melody_models, shard_size=2, batch=2, progress=False)
    return out


def test_each_clip_carries_the_melody_models_tokens(melody_models, corpus, store_dir):
    from musiclm.audio import load_audio

    store = TokenStore.open(store_dir)
    assert store.has_melody and store.info.melody_levels == 3 and store.info.melody_codebook_size == 8
    assert store.info.melody["fingerprint"] == melody_models.melody.fingerprint()
    for i, clip_id in enumerate(store.ids):
        wav, _ = load_audio(corpus / "audio" / f"{clip_id}.wav", sample_rate=SR)
        expected = melody_models.melody.tokens(torch.as_tensor(wav)[None], SR)[0].numpy()
        melody = store.melody(i)
        assert melody.dtype == np.int16 and melody.shape == expected.shape
        assert melody.shape[0] == melody_models.melody.num_windows(store.seconds(i))
        assert np.array_equal(melody, expected)
        assert store.clip(i).melody is not None
    assert store_status(store_dir)["melody"]["num_quantizers"] == 3


def test_a_store_without_melody_says_so(corpus, tmp_path):
    out = tmp_path / "plain"
    build_store([corpus], out, make_models(0), shard_size=2, batch=2, progress=False)
    store = TokenStore.open(out)
    assert not store.has_melody and store.info.melody is None and store.clip(0).melody is None
    with pytest.raises(TokenStoreError, match="no melody tokens"):
        store.melody(0)
    # adding a melody model to a store made without one would mix two kinds of shards
    melody = _random_melody("tiny", torch.Generator().manual_seed(0))
    with pytest.raises(TokenizeError, match="melody model differs"):
        build_store([corpus], out, replace(make_models(0), melody=melody), shard_size=2, progress=False)


def test_damaged_melody_arrays_are_caught(store_dir, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(store_dir, copy)
    shard = next((copy / "shards").glob("*.npz"))
    with np.load(shard, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["melody"] = arrays["melody"] + 100  # outside the codebook
    np.savez(shard, **arrays)
    with pytest.raises(TokenStoreError, match="melody outside"):
        TokenStore.open(copy)


def test_semantic_stage_takes_the_stores_melody_tokens(store_dir):
    from musiclm.config import preset
    from musiclm.lm.recipe import configure_for_store, melody_slots, store_info_dict

    info = store_info_dict(TokenStore.open(store_dir))
    semantic = configure_for_store(preset("lm-semantic", "small"), info)
    spaces = semantic.model.tokens
    assert (spaces.melody_levels, spaces.melody_codebook, spaces.melody_hop_seconds) == (3, 8, 0.6)
    assert spaces.melody_slots == melody_slots(semantic.model.window_seconds, 1.0, 0.6) == 16
    assert semantic.model.melody_fingerprint == info["melody"]["fingerprint"]
    coarse = configure_for_store(preset("lm-coarse", "small"), info)
    assert coarse.model.tokens.melody_levels == 0 and not coarse.model.melody_fingerprint
    assert melody_slots(10.0, 4.0, 3.0) == 3 and melody_slots(2.0, 4.0, 3.0) == 1
