"""Listening tests: setup, blind pair scheduling, ratings in SQLite (migrations, concurrency), analysis, export
and the HTTP endpoints."""

from __future__ import annotations

import csv
import io
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import wilcoxon
from server_testing import client, make_app, wav_bytes

from musiclm.server.listening import MIGRATIONS, ListeningError, ListeningStore, analyse, read_prompts

PROMPTS = "p1\ta calm piano piece\np2\tfast punk drums\n# a comment\np3\ta jazz trio\n"


def make_systems(root: Path, names=("base", "tuned", "reference"), keys=("p1", "p2", "p3")) -> dict[str, Path]:
    systems = {}
    for i, name in enumerate(names):
        folder = root / name
        folder.mkdir(parents=True)
        for j, key in enumerate(keys):
            (folder / f"{key}.wav").write_bytes(wav_bytes(0.5, freq=200.0 + 50 * i + 7 * j))
        systems[name] = folder
    return systems


@pytest.fixture
def store(tmp_path):
    prompts = tmp_path / "prompts.tsv"
    prompts.write_text(PROMPTS)
    store = ListeningStore(tmp_path / "data")
    store.create_test("demo", read_prompts(prompts), make_systems(tmp_path / "clips"))
    return store


def test_prompt_files(tmp_path):
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"id": "a", "caption": "x"}\n{"key": "b", "text": "y"}\n{"prompt": "z"}\n')
    assert [(p.key, p.caption) for p in read_prompts(jsonl)] == [("a", "x"), ("b", "y"), ("3", "z")]
    plain = tmp_path / "p.txt"
    plain.write_text("first caption\n\nsecond caption\n")
    assert [(p.key, p.caption) for p in read_prompts(plain)] == [("1", "first caption"), ("2", "second caption")]
    for text, words in [("../x\tcap\n", "key"), ("a\tx\na\ty\n", "duplicate"), ("", "no prompts"),
                        ("k\t \n", "no caption")]:
        bad = tmp_path / "bad.tsv"
        bad.write_text(text)
        with pytest.raises(ListeningError, match=words):
            read_prompts(bad)


def test_create_checks_systems_and_clips(tmp_path):
    store = ListeningStore(tmp_path / "data")
    prompts = read_prompts(_write(tmp_path / "p.tsv", PROMPTS))
    systems = make_systems(tmp_path / "c", keys=("p1", "p2"))
    with pytest.raises(ListeningError, match=r"missing clips.*p3"):
        store.create_test("t", prompts, systems)
    with pytest.raises(ListeningError, match="at least two"):
        store.create_test("t", prompts, {"one": systems["base"]})
    with pytest.raises(ListeningError, match="test name"):
        store.create_test("../evil", prompts[:2], systems)
    result = store.create_test("t", prompts[:2], systems)
    assert result["pairs"] == 2 * 3 and result["clips"] == 6
    with pytest.raises(ListeningError, match="already exists"):
        store.create_test("t", prompts[:2], systems)
    # clips are copied under content-hash names
    assert all(len(f.stem) == 64 and f.suffix == ".wav" for f in (tmp_path / "data" / "clips").iterdir())


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_each_rater_gets_every_pair_once_in_random_order_and_sides(store):
    rng = np.random.default_rng(0)
    sides = set()
    for rater in ("ann", "bob"):
        seen = []
        while True:
            pair = store.next_pair("demo", rater, rng)
            if pair["done"]:
                break
            assert pair["a"]["clip"] != pair["b"]["clip"] and pair["prompt"]["caption"]
            seen.append(frozenset((pair["a"]["clip"], pair["b"]["clip"])))
            sides.add((pair["a"]["clip"], pair["b"]["clip"]))
            store.rate("demo", rater, pair["a"]["clip"], pair["b"]["clip"], int(rng.integers(-2, 3)))
        assert len(seen) == len(set(seen)) == 9
    assert any((b, a) in sides for a, b in sides)  # both orientations occur
    with pytest.raises(ListeningError) as duplicate:
        store.rate("demo", "ann", *sorted(next(iter(sides))), 1)
    assert duplicate.value.status == 409


def test_bad_ratings_are_refused(store):
    pair = store.next_pair("demo", "ann", np.random.default_rng(1))
    a, b = pair["a"]["clip"], pair["b"]["clip"]
    for args, words in [((a, b, 3), "score"), ((a, b, True), "score"), ((a, a, 1), "not a pair"),
                        ((a, "f" * 16, 1), "unknown clip"), ((a, "../../x", 1), "unknown clip")]:
        with pytest.raises(ListeningError, match=words):
            store.rate("demo", "ann", *args)
    with pytest.raises(ListeningError, match="rater"):
        store.rate("demo", " ", a, b, 1)
    with pytest.raises(ListeningError) as missing:
        store.next_pair("nope", "ann", np.random.default_rng(0))
    assert missing.value.status == 404
    other_prompt = next(p for p in _all_pairs(store) if pair["prompt"]["key"] != p[2])
    with pytest.raises(ListeningError, match="not a pair"):
        store.rate("demo", "ann", a, other_prompt[0], 1)


def _all_pairs(store):
    with store.connect() as conn:
        rows = conn.execute("SELECT c.token, p.key FROM clips c JOIN prompts p ON p.id = c.prompt_id").fetchall()
    return [(r[0], None, r[1]) for r in rows]


def test_concurrent_raters_lose_nothing(store):
    errors = []

    def rater(name: str) -> None:
        rng = np.random.default_rng(abs(hash(name)) % 2**32)
        try:
            while not (pair := store.next_pair("demo", name, rng))["done"]:
                store.rate("demo", name, pair["a"]["clip"], pair["b"]["clip"], int(rng.integers(-2, 3)), 1000)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=rater, args=(f"rater-{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store.ratings("demo")) == 6 * 9
    assert store.results("demo")["raters"] == 6


def test_migrations_upgrade_an_old_database(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    conn = sqlite3.connect(data / "listening.sqlite")
    conn.executescript(MIGRATIONS[0])
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    store = ListeningStore(data)
    assert store.schema_version() == len(MIGRATIONS) == 2
    with store.connect() as conn:
        assert "elapsed_ms" in [r[1] for r in conn.execute("PRAGMA table_info(ratings)")]
    ListeningStore(data)  # idempotent
    conn = sqlite3.connect(data / "listening.sqlite")
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(ListeningError, match="newer"):
        ListeningStore(data)


def test_analysis_counts_wins_and_matches_scipy():
    rng = np.random.default_rng(3)
    ratings = []
    for i in range(40):
        better_b = rng.random() < 0.8  # system "new" (shown left on even i) usually wins
        score = int(rng.integers(1, 3)) * (1 if better_b else -1) if i % 7 else 0
        left, right = ("old", "new") if i % 2 else ("new", "old")
        if left == "new":
            score = -score
        ratings.append({"system_a": left, "system_b": right, "score": score, "rater": f"r{i % 5}"})
    result = analyse(["old", "new", "ref"], ratings)
    rows = {r["system"]: r for r in result["systems"]}
    prefs_new = [(-r["score"] if r["system_a"] == "new" else r["score"]) for r in ratings]
    assert rows["new"]["wins"] == sum(p > 0 for p in prefs_new) and rows["old"]["wins"] == sum(p < 0 for p in prefs_new)
    assert rows["new"]["ties"] == rows["old"]["ties"] == sum(p == 0 for p in prefs_new)
    assert result["systems"][0]["system"] == "new" and rows["ref"]["win_rate"] is None
    pair = next(p for p in result["pairs"] if {p["system_x"], p["system_y"]} == {"old", "new"})
    assert pair["n"] == 40
    expected = wilcoxon(prefs_new, zero_method="wilcox")
    assert pair["p_value"] == pytest.approx(expected.pvalue) and pair["p_value"] < 0.01
    empty = next(p for p in result["pairs"] if p["system_y"] == "ref")
    assert empty["n"] == 0 and empty["p_value"] is None


def test_http_endpoints_and_csv_export(tiny_musiclm, tmp_path):
    prompts = read_prompts(_write(tmp_path / "p.tsv", PROMPTS))
    ListeningStore(tmp_path / "listening").create_test("demo test", prompts, make_systems(tmp_path / "c"))
    with client(make_app(tiny_musiclm, tmp_path)) as api:
        tests = api.get("/api/listen/tests").json()
        assert tests[0]["name"] == "demo test" and tests[0]["systems"] == 3
        pair = api.get("/api/listen/tests/demo test/next", params={"rater": "ann"}).json()
        assert "base" not in str(pair) and "tuned" not in str(pair)  # blind: no system names
        clip = api.get(pair["a"]["url"])
        assert clip.status_code == 200 and clip.headers["content-type"] == "audio/wav" and clip.content[:4] == b"RIFF"
        answer = api.post("/api/listen/tests/demo test/ratings",
                          json={"rater": "ann", "a": pair["a"]["clip"], "b": pair["b"]["clip"], "score": -2,
                                "elapsed_ms": 5000})
        assert answer.status_code == 201
        again = api.post("/api/listen/tests/demo test/ratings",
                         json={"rater": "ann", "a": pair["b"]["clip"], "b": pair["a"]["clip"], "score": 1})
        assert again.status_code == 409
        bad = api.post("/api/listen/tests/demo test/ratings", json={"rater": "ann", "a": "x", "b": "y", "score": 9})
        assert bad.status_code == 422
        missing_field = api.post("/api/listen/tests/demo test/ratings", json={"rater": "ann", "a": "x", "b": "y"})
        assert missing_field.status_code == 422 and missing_field.json()["field"] == "score"
        assert api.get("/api/listen/tests/demo test/next").json()["field"] == "rater"
        assert api.get("/api/listen/tests/nope/results").status_code == 404
        assert api.get("/api/listen/clips/..%2F..%2Fetc").status_code == 404
        assert api.get("/api/listen/clips/0123456789abcdef").status_code == 404
        results = api.get("/api/listen/tests/demo test/results").json()
        assert results["ratings"] == 1 and sum(s["wins"] for s in results["systems"]) == 1
        exported = api.get("/api/listen/tests/demo test/ratings.csv")
    assert exported.headers["content-type"].startswith("text/csv")
    (row,) = list(csv.DictReader(io.StringIO(exported.text)))
    assert row["rater"] == "ann" and row["score"] == "-2" and row["preferred"] == row["system_a"]
    assert row["elapsed_ms"] == "5000" and row["caption"] == pair["prompt"]["caption"]
