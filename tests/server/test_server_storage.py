"""The results folder: ids only, expiry, size cap, restart."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from musiclm.server.storage import ResultStore, UnknownResult, check_job_id, new_job_id


def _save(store: ResultStore, seconds: float = 0.5, finished: float | None = None) -> str:
    job_id = new_job_id()
    wav = np.full(int(seconds * 24_000), 0.1, dtype=np.float32)
    store.save(job_id, wav, 24_000, {"id": job_id, "finished": finished or time.time(), "params": {}})
    return job_id


@pytest.mark.parametrize("bad", ["", "../etc", "0" * 31, "0" * 33, "G" * 32, "ABCDEF" + "0" * 26, "a/b", None, 5])
def test_only_job_ids_make_paths(tmp_path, bad):
    store = ResultStore(tmp_path)
    with pytest.raises(UnknownResult):
        check_job_id(bad)
    with pytest.raises(UnknownResult):
        store.audio_path(bad)


def test_new_ids_are_unique_and_valid():
    ids = {new_job_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(check_job_id(i) == i for i in ids)


def test_prune_removes_expired_then_oldest_over_the_cap(tmp_path):
    store = ResultStore(tmp_path, max_bytes=10**9, max_age_seconds=3600)
    now = time.time()
    old = _save(store, finished=now - 7200)
    recent = [_save(store, finished=now - 100 + i) for i in range(3)]
    assert store.prune(now=now) == [old]
    size = store.total_bytes()
    store.max_bytes = size - 1  # one result too many
    assert store.prune(now=now) == [recent[0]]
    assert sorted(m["id"] for m in store.load_all()) == sorted(recent[1:])
    store.max_bytes = 1
    assert store.prune(now=now, keep={recent[2]}) == [recent[1]]
    assert [m["id"] for m in store.load_all()] == [recent[2]]


def test_load_all_skips_foreign_and_broken_folders(tmp_path):
    store = ResultStore(tmp_path)
    good = _save(store)
    (tmp_path / "not-a-job").mkdir()
    broken = tmp_path / new_job_id()
    broken.mkdir()
    (broken / "meta.json").write_text("{not json")
    liar = _save(store)
    meta = json.loads((tmp_path / liar / "meta.json").read_text())
    meta["id"] = good
    (tmp_path / liar / "meta.json").write_text(json.dumps(meta))
    assert [m["id"] for m in store.load_all()] == [good]


def test_spectrogram_is_drawn_once_and_delete_removes_everything(tmp_path):
    store = ResultStore(tmp_path)
    job = _save(store, seconds=1.0)
    png = store.spectrogram(job, "a title")
    assert png[:4] == b"\x89PNG" and (tmp_path / job / "spectrogram.png").is_file()
    stamp = os.stat(tmp_path / job / "spectrogram.png").st_mtime_ns
    assert store.spectrogram(job) == png and os.stat(tmp_path / job / "spectrogram.png").st_mtime_ns == stamp
    assert store.delete(job) and not (tmp_path / job).exists() and not store.delete(job)
    with pytest.raises(UnknownResult):
        store.audio_path(job)
