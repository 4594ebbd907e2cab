"""``musiclm serve`` and ``musiclm listen ...``, called through the module's own parser."""

from __future__ import annotations

import argparse
import csv
import io
import json

import pytest
from server_testing import client, one_torch_thread, wav_bytes  # noqa: F401 (autouse fixture)

from musiclm.server import cli


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="musiclm")
    cli.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(list(argv))


def test_serve_defaults_bind_to_localhost(tmp_path):
    args = parse("serve", "--data-dir", str(tmp_path))
    assert (args.host, args.port, args.workers, args.model) == ("127.0.0.1", 8000, 1, None)
    settings = cli.build_settings(args)
    assert "localhost" in settings.allowed_hosts and "127.0.0.1" in settings.allowed_hosts
    wide = cli.build_settings(parse("serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path)))
    assert wide.allowed_hosts is None
    assert cli.is_loopback("::1") and cli.is_loopback("127.0.0.2") and not cli.is_loopback("0.0.0.0")
    with pytest.raises(cli.ServeError, match="workers"):
        cli.build_settings(parse("serve", "--workers", "0", "--data-dir", str(tmp_path)))
    with pytest.raises(cli.ServeError, match="duration cap"):
        cli.build_settings(parse("serve", "--max-duration", "1000", "--data-dir", str(tmp_path)))


def test_serve_without_a_model_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.delenv("MUSICLM_MODEL", raising=False)
    args = parse("serve", "--model", str(tmp_path / "nothing"), "--data-dir", str(tmp_path / "data"))
    with pytest.raises(cli.ServeError, match=r"cannot load the model.*missing codec.*--model DIR"):
        args.handler(args)


def test_serve_loads_the_model_folder_once_and_runs_uvicorn(tiny_model_dir, tmp_path, monkeypatch):
    import uvicorn

    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.update(app=app, **kw))
    args = parse("serve", "--model", str(tiny_model_dir), "--data-dir", str(tmp_path), "--port", "8123",
                 "--workers", "2", "--device", "cpu")
    args.handler(args)
    assert served["host"] == "127.0.0.1" and served["port"] == 8123
    with client(served["app"]) as api:
        info = api.get("/api/info").json()
    assert info["model"] == str(tiny_model_dir) and info["workers"] == 2


def test_listen_create_list_results_export(tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a calm piano piece\nfast punk drums\n")
    for system in ("a", "b"):
        (tmp_path / system).mkdir()
        for key in ("1", "2"):
            (tmp_path / system / f"{key}.wav").write_bytes(wav_bytes(0.5))
    data = ["--data-dir", str(tmp_path / "data")]
    args = parse("listen", "create", "--name", "t1", "--prompts", str(prompts), "--system", f"a={tmp_path / 'a'}",
                 "--system", f"b={tmp_path / 'b'}", "--json", *data)
    args.handler(args)
    created = json.loads(capsys.readouterr().out)
    assert created["pairs"] == 2 and created["systems"] == ["a", "b"]

    from musiclm.server.listening import ListeningStore

    store = ListeningStore(tmp_path / "data" / "listening")
    import numpy as np

    pair = store.next_pair("t1", "ann", np.random.default_rng(0))
    store.rate("t1", "ann", pair["a"]["clip"], pair["b"]["clip"], 2)
    args = parse("listen", "list", *data)
    args.handler(args)
    assert "t1: 2 prompts, 2 systems, 1 ratings from 1 raters" in capsys.readouterr().out
    args = parse("listen", "results", "--name", "t1", "--json", *data)
    args.handler(args)
    assert json.loads(capsys.readouterr().out)["ratings"] == 1
    out = tmp_path / "ratings.csv"
    args = parse("listen", "export", "--name", "t1", "-o", str(out), *data)
    args.handler(args)
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 1 and rows[0]["rater"] == "ann" and rows[0]["preferred"] == rows[0]["system_b"]
    args = parse("listen", "create", "--name", "t2", "--prompts", str(prompts), "--system", "nofolder", *data)
    with pytest.raises(Exception, match="NAME=FOLDER"):
        args.handler(args)


def test_listen_render_writes_one_clip_per_prompt(tiny_musiclm, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "load_model", lambda *a, **k: tiny_musiclm)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"id": "calm", "caption": "a calm piano piece"}\n{"id": "punk", "caption": "fast punk"}\n')
    args = parse("listen", "render", "--prompts", str(prompts), "--out", str(tmp_path / "sys"), "-d", "0.5",
                 "--temperature", "0.9", "--json")
    args.handler(args)
    assert json.loads(capsys.readouterr().out)["written"] == 2
    assert sorted(p.name for p in (tmp_path / "sys").iterdir()) == ["calm.wav", "punk.wav"]
    args.handler(args)  # existing clips are kept
    assert json.loads(capsys.readouterr().out)["written"] == 0
