"""TokenStore reading: accessors, views, validation and clear errors, on shards written from hand-made arrays."""

from __future__ import annotations

import json

import numpy as np
import pytest

from musiclm.tokenstore.store import (
    ARRAY_FIELDS,
    STORE_FILE,
    StoreInfo,
    TokenStore,
    TokenStoreError,
    index_ranges,
    read_info,
    report_path,
    shard_path,
    shard_report,
    string_array,
    write_info,
    write_shard,
)

LEVELS, Q, D = 12, 12, 16


def make_info(num_shards: int = 2, shard_size: int = 3, codec_fp: str = "codec0") -> StoreInfo:
    return StoreInfo(corpora=[{"name": "toy", "path": "/nowhere/toy", "clips": num_shards * shard_size}],
                     splits=["train", "valid", "test"], shard_size=shard_size, num_shards=num_shards,
                     num_clips=num_shards * shard_size, layout="layout0", sample_rate=24_000,
                     codec={"fingerprint": codec_fp, "frame_rate": 50.0, "levels": LEVELS, "coarse_levels": 4,
                            "codebook_size": 1024},
                     semantic={"fingerprint": "sem0", "token_rate": 25, "num_clusters": 512, "layer": 4},
                     mulan={"fingerprint": "mulan0", "embed_dim": D, "num_quantizers": Q, "codebook_size": 1024})


def make_clips(rng: np.random.Generator, first: int, n: int) -> list[dict]:
    clips = []
    for k in range(first, first + n):
        frames = int(rng.integers(3, 9)) * 2
        clips.append({"id": f"clip{k:03d}", "split": ["train", "valid", "test"][k % 3], "caption": f"caption {k}",
                      "seconds": frames / 50, "codes": rng.integers(0, 1024, (LEVELS, frames)).astype(np.int16),
                      "semantic": rng.integers(0, 512, frames // 2).astype(np.int16),
                      "mulan_tokens": rng.integers(0, 1024, Q).astype(np.int16),
                      "mulan_embedding": rng.standard_normal(D).astype(np.float16)})
    return clips


def shard_arrays(clips: list[dict], info: StoreInfo) -> dict[str, np.ndarray]:
    return {
        "ids": string_array([c["id"] for c in clips]), "splits": string_array([c["split"] for c in clips]),
        "corpora": string_array(["toy"] * len(clips)), "sources": string_array(["test"] * len(clips)),
        "captions": string_array([c["caption"] for c in clips]),
        "seconds": np.array([c["seconds"] for c in clips], dtype=np.float64),
        "codes": np.concatenate([c["codes"] for c in clips], axis=1) if clips else np.zeros((LEVELS, 0), np.int16),
        "code_offsets": np.cumsum([0] + [c["codes"].shape[1] for c in clips]).astype(np.int64),
        "semantic": np.concatenate([c["semantic"] for c in clips]) if clips else np.zeros(0, np.int16),
        "semantic_offsets": np.cumsum([0] + [c["semantic"].shape[0] for c in clips]).astype(np.int64),
        "mulan_tokens": np.stack([c["mulan_tokens"] for c in clips]) if clips else np.zeros((0, Q), np.int16),
        "mulan_embedding": (np.stack([c["mulan_embedding"] for c in clips]) if clips
                            else np.zeros((0, D), np.float16)),
        "store_key": np.array(info.key),
    }


@pytest.fixture
def store(tmp_path):
    """A two-shard store of six clips; returns (folder, info, clips)."""
    info = make_info()
    write_info(tmp_path, info)
    rng = np.random.default_rng(0)
    clips = make_clips(rng, 0, 6)
    for index in range(2):
        part = clips[index * 3 : index * 3 + 3]
        write_shard(tmp_path, index, shard_arrays(part, info), {"shard": index, "store_key": info.key,
                                                                 "skipped": [], "splits": {}})
    return tmp_path, info, clips


def test_accessors_return_what_was_written(store):
    folder, _, clips = store
    tokens = TokenStore.open(folder)
    assert len(tokens) == 6 and tokens.complete
    assert tokens.ids == [c["id"] for c in clips]
    assert tokens.splits == [c["split"] for c in clips]
    for i, clip in enumerate(clips):
        assert np.array_equal(tokens.codes(i), clip["codes"]) and tokens.codes(i).dtype == np.int16
        assert np.array_equal(tokens.semantic(i), clip["semantic"]) and tokens.semantic(i).dtype == np.int16
        assert np.array_equal(tokens.mulan_tokens(i), clip["mulan_tokens"])
        assert np.array_equal(tokens.mulan_embedding(i), clip["mulan_embedding"])
        assert tokens.mulan_embedding(i).dtype == np.float16
        assert tokens.caption(i) == clip["caption"] and tokens.seconds(i) == pytest.approx(clip["seconds"])
        assert tokens.clip(i).id == clip["id"] and tokens.corpus(i) == "toy"
    assert tokens.code_lengths().tolist() == [c["codes"].shape[1] for c in clips]
    assert tokens.hours() == pytest.approx(sum(c["seconds"] for c in clips) / 3600)
    assert tokens.info.levels == LEVELS and tokens.info.coarse_levels == 4 and tokens.info.semantic_clusters == 512
    assert tokens.index("clip004") == 4
    with pytest.raises(IndexError):
        tokens.codes(6)


def test_select_is_a_view_of_one_split(store):
    folder, _, clips = store
    tokens = TokenStore.open(folder)
    valid = tokens.select("valid")
    expected = [c for c in clips if c["split"] == "valid"]
    assert valid.ids == [c["id"] for c in expected] and len(valid) == 2
    assert np.array_equal(valid.codes(1), expected[1]["codes"])
    assert np.shares_memory(valid.codes(0), tokens.codes(tokens.index(expected[0]["id"])))
    assert len(tokens.select(["train", "test"])) == 4 and len(valid.select("train")) == 0
    assert tokens.split_counts() == {"test": 2, "train": 2, "valid": 2}


def test_arrays_are_read_only(store):
    tokens = TokenStore.open(store[0])
    with pytest.raises(ValueError):
        tokens.codes(0)[0, 0] = 1


def test_shards_load_without_pickles(store):
    folder = store[0]
    with np.load(shard_path(folder, 0), allow_pickle=False) as npz:
        assert set(npz.files) == set(ARRAY_FIELDS)
        assert npz["ids"].dtype.kind == "U" and npz["captions"].dtype.kind == "U"


def test_missing_store_is_a_clear_error(tmp_path):
    with pytest.raises(TokenStoreError, match="not a token store"):
        TokenStore.open(tmp_path / "nothing")
    with pytest.raises(TokenStoreError, match=r"no store\.json"):
        TokenStore.open(tmp_path)


def test_incomplete_store_needs_allow_incomplete(store):
    folder, _, clips = store
    shard_path(folder, 1).unlink()
    with pytest.raises(TokenStoreError, match=r"1 of 2 shards are not done yet \(1\)"):
        TokenStore.open(folder)
    partial = TokenStore.open(folder, allow_incomplete=True)
    assert partial.ids == [c["id"] for c in clips[:3]] and not partial.complete


def test_corrupt_shard_is_a_clear_error(store):
    folder = store[0]
    path = shard_path(folder, 1)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(TokenStoreError, match=r"shard-00001\.npz: corrupt shard"):
        TokenStore.open(folder)


def test_shard_of_another_store_is_rejected(store):
    folder, _, clips = store
    other = make_info(codec_fp="another codec")
    write_shard(folder, 1, shard_arrays(clips[3:], other), {"shard": 1, "store_key": other.key})
    with pytest.raises(TokenStoreError, match="belongs to another token store"):
        TokenStore.open(folder)


def test_out_of_range_tokens_are_rejected(store):
    folder, info, clips = store
    bad = shard_arrays(clips[3:], info)
    bad["semantic"] = bad["semantic"].copy()
    bad["semantic"][0] = 600  # >= 512 clusters
    write_shard(folder, 1, bad, {"shard": 1, "store_key": info.key})
    with pytest.raises(TokenStoreError, match="semantic outside"):
        TokenStore.open(folder)


def test_inconsistent_offsets_are_rejected(store):
    folder, info, clips = store
    bad = shard_arrays(clips[3:], info)
    bad["code_offsets"] = bad["code_offsets"] + 1
    write_shard(folder, 1, bad, {"shard": 1, "store_key": info.key})
    with pytest.raises(TokenStoreError, match="code_offsets do not fit"):
        TokenStore.open(folder)


def test_edited_or_foreign_store_json_is_rejected(store):
    folder = store[0]
    data = json.loads((folder / STORE_FILE).read_text())
    data["shard_size"] = 99
    (folder / STORE_FILE).write_text(json.dumps(data))
    with pytest.raises(TokenStoreError, match="key does not match"):
        read_info(folder)
    data["version"] = 999
    (folder / STORE_FILE).write_text(json.dumps(data))
    with pytest.raises(TokenStoreError, match="version 999 is not supported"):
        read_info(folder)
    (folder / STORE_FILE).write_text("{not json")
    with pytest.raises(TokenStoreError, match="unreadable"):
        read_info(folder)


def test_lost_report_is_restored_from_the_shard(store):
    folder, info, _ = store
    report_path(folder, 0).unlink()
    assert shard_report(folder, 0, info)["shard"] == 0
    assert json.loads(report_path(folder, 0).read_text())["store_key"] == info.key
    shard_path(folder, 1).unlink()
    assert shard_report(folder, 1, info) is None


def test_empty_shard_is_valid(tmp_path):
    info = make_info(num_shards=1)
    write_info(tmp_path, info)
    write_shard(tmp_path, 0, shard_arrays([], info), {"shard": 0, "store_key": info.key,
                                                       "skipped": [{"id": "x", "corpus": "toy", "reason": "bad"}]})
    tokens = TokenStore.open(tmp_path)
    assert len(tokens) == 0 and tokens.skipped == [{"id": "x", "corpus": "toy", "reason": "bad"}]


def test_index_ranges():
    assert index_ranges([5, 0, 1, 2, 7, 8]) == "0-2,5,7-8"
    assert index_ranges([]) == "" and index_ranges([3]) == "3"
