"""Token stores made with a melody model or with ``--contour``: melody tokens and pitch contours per clip,
identity, reuse, damage, and the semantic stage's spaces."""

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

from musiclm.melody.contour import CONTOUR_VALUES, PitchContour  # noqa: E402
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


@pytest.mark.parametrize("store, array, message", [("store_dir", "melody", "melody outside"),
                                                     ("contour_store_dir", "contour", "contour outside")])
def test_damaged_melody_and_contour_arrays_are_caught(store, array, message, request, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(request.getfixturevalue(store), copy)
    shard = next((copy / "shards").glob("*.npz"))
    with np.load(shard, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays[array] = arrays[array] + 300  # outside the codebook / the contour values
    np.savez(shard, **arrays)
    with pytest.raises(TokenStoreError, match=message):
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


# ------------------------------------------------------------------------------------------- pitch contours
@pytest.fixture(scope="module")
def contour_models():
    return replace(make_models(0), contour=PitchContour())


@pytest.fixture(scope="module")
def plain_dir(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("plain")
    build_store([corpus], out, make_models(0), shard_size=2, batch=2, progress=False)
    return out


@pytest.fixture(scope="module")
def contour_store_dir(contour_models, corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("store")
    build_store([corpus], out, contour_models, shard_size=2, batch=2, progress=False)
    return out


def test_each_clip_carries_its_contour_one_value_per_semantic_token(corpus, contour_store_dir):
    from musiclm.audio import load_audio

    store = TokenStore.open(contour_store_dir)
    assert store.has_contour and store.info.contour_values == CONTOUR_VALUES
    assert store.info.contour["fingerprint"] == PitchContour().fingerprint()
    for i, clip_id in enumerate(store.ids):
        wav, _ = load_audio(corpus / "audio" / f"{clip_id}.wav", sample_rate=SR)
        contour = store.contour(i)
        assert contour.dtype == np.int16 and contour.shape == store.semantic(i).shape
        assert np.array_equal(contour, PitchContour()(wav, SR)[0])
        assert store.clip(i).contour is not None
    assert store_status(contour_store_dir)["contour"]["values"] == CONTOUR_VALUES


def test_contours_join_a_store_by_reuse_and_never_by_mixing(corpus, plain_dir, contour_store_dir, contour_models,
                                                            tmp_path):
    plain = TokenStore.open(plain_dir)
    assert not plain.has_contour and plain.clip(0).contour is None
    with pytest.raises(TokenStoreError, match="no pitch contours"):
        plain.contour(0)
    with pytest.raises(TokenizeError, match="contour model differs"):
        build_store([corpus], plain_dir, contour_models, shard_size=2, progress=False)
    out = tmp_path / "reused"
    report = build_store([corpus], out, contour_models, shard_size=2, progress=False, reuse=plain_dir)
    assert "contour" in report.parts_computed and "semantic" in report.parts_copied
    reused, direct = TokenStore.open(out), TokenStore.open(contour_store_dir)
    for i in range(len(direct)):
        assert np.array_equal(reused.contour(i), direct.contour(i))
        assert np.array_equal(reused.semantic(i), direct.semantic(i))
