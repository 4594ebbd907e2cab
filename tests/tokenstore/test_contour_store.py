"""Token stores made with ``--contour``: a pitch contour per clip, reuse, identity, damage, and the stage."""

from __future__ import annotations

import shutil
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from test_build import make_models, write_corpus  # noqa: E402

from musiclm.melody.contour import CONTOUR_VALUES, PitchContour  # noqa: E402
from musiclm.tokenstore import TokenStore  # noqa: E402
from musiclm.tokenstore.build import TokenizeError, build_store, store_status  # noqa: E402
from musiclm.tokenstore.store import TokenStoreError  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

SR = 24_000


@pytest.fixture(scope="module")
def contour_models():
    return replace(make_models(0), contour=PitchContour())


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus"), lengths=(1.0, 2.0, 3.1, 1.5, 2.5))


@pytest.fixture(scope="module")
def plain_dir(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("plain")
    build_store([corpus], out, make_models(0), shard_size=2, batch=2, progress=False)
    return out


@pytest.fixture(scope="module")
def store_dir(contour_models, corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("store")
    build_store([corpus], out, contour_models, shard_size=2, batch=2, progress=False)
    return out


def test_each_clip_carries_its_contour_one_value_per_semantic_token(corpus, store_dir):
    from musiclm.audio import load_audio

    store = TokenStore.open(store_dir)
    assert store.has_contour and store.info.contour_values == CONTOUR_VALUES
    assert store.info.contour["fingerprint"] == PitchContour().fingerprint()
    for i, clip_id in enumerate(store.ids):
        wav, _ = load_audio(corpus / "audio" / f"{clip_id}.wav", sample_rate=SR)
        contour = store.contour(i)
        assert contour.dtype == np.int16 and contour.shape == store.semantic(i).shape
        assert np.array_equal(contour, PitchContour()(wav, SR)[0])
        assert store.clip(i).contour is not None
    assert store_status(store_dir)["contour"]["values"] == CONTOUR_VALUES


def test_contours_join_a_store_by_reuse_and_never_by_mixing(corpus, plain_dir, store_dir, contour_models, tmp_path):
    plain = TokenStore.open(plain_dir)
    assert not plain.has_contour and plain.clip(0).contour is None
    with pytest.raises(TokenStoreError, match="no pitch contours"):
        plain.contour(0)
    with pytest.raises(TokenizeError, match="contour model differs"):
        build_store([corpus], plain_dir, contour_models, shard_size=2, progress=False)
    out = tmp_path / "reused"
    report = build_store([corpus], out, contour_models, shard_size=2, progress=False, reuse=plain_dir)
    assert "contour" in report.parts_computed and "semantic" in report.parts_copied
    reused, direct = TokenStore.open(out), TokenStore.open(store_dir)
    for i in range(len(direct)):
        assert np.array_equal(reused.contour(i), direct.contour(i))
        assert np.array_equal(reused.semantic(i), direct.semantic(i))


def test_damaged_contours_are_caught(store_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(store_dir, copy)
    shard = next((copy / "shards").glob("*.npz"))
    with np.load(shard, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["contour"] = arrays["contour"] + CONTOUR_VALUES
    np.savez(shard, **arrays)
    with pytest.raises(TokenStoreError, match="contour outside"):
        TokenStore.open(copy)
