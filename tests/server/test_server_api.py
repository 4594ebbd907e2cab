"""The generation API on the tiny random model: happy paths, every validation error, the queue, cancel,
concurrency, melody uploads, ids, restarts and the request guards."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from server_testing import (  # noqa: F401 (autouse fixture)
    GatedModel,
    MelodyModel,
    client,
    decode_wav,
    make_app,
    one_torch_thread,
    wait_state,
    wav_bytes,
)

from musiclm.server.requests import Limits


@pytest.fixture
def api(tiny_musiclm, tmp_path):
    with client(make_app(tiny_musiclm, tmp_path, workers=1)) as c:
        yield c


def test_generate_json_happy_path_matches_the_pipeline(api, tiny_musiclm):
    answer = api.post("/api/generate", json={"prompt": "a calm piano piece", "duration": 1.0, "seed": 7,
                                             "temperature": "1.0,0.9,0.5", "top_k": 50, "cfg": 2.0})
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert re.fullmatch(r"[0-9a-f]{32}", body["id"]) and body["seed"] == 7
    status = wait_state(api, body["id"])
    assert status["state"] == "done" and status["error"] is None
    stages = status["progress"]["stages"]
    assert [stages[s]["done"] == stages[s]["total"] > 0 for s in ("semantic", "coarse", "fine", "decode")] == [True] * 4
    assert status["progress"]["fraction"] == 1.0 and status["result"]["seconds"] == 1.0
    assert status["params"]["temperature"] == [1.0, 0.9, 0.5] and status["params"]["top_k"] == 50

    audio = api.get(f"/api/jobs/{body['id']}/audio")
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
    assert audio.headers["content-disposition"].startswith("inline")
    wav, rate = decode_wav(audio.content)
    expected, _ = tiny_musiclm.generate(["a calm piano piece"], 1.0, seed=7, temperature=[1.0, 0.9, 0.5], top_k=50,
                                        cfg=2.0)
    assert rate == 24_000 and wav.shape == (24_000,)
    np.testing.assert_allclose(wav, expected[0].numpy(), atol=1e-6)

    part = api.get(f"/api/jobs/{body['id']}/audio", headers={"Range": "bytes=0-99"})  # players seek with ranges
    assert part.status_code == 206 and part.content == audio.content[:100]
    download = api.get(f"/api/jobs/{body['id']}/audio?download=1")
    assert download.headers["content-disposition"].startswith("attachment") and "a-calm-piano-piece" in \
        download.headers["content-disposition"]
    png = api.get(f"/api/jobs/{body['id']}/spectrogram.png")
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert api.get(f"/api/jobs/{body['id']}/spectrogram.png").content == png.content  # cached on disk


def test_form_request_with_a_story_and_a_random_seed(api):
    answer = api.post("/api/generate", data={"story": "0:a calm intro;0.5:the drums come in", "duration": "1",
                                             "seed": "", "temperature": ""})
    assert answer.status_code == 202, answer.text
    status = wait_state(api, answer.json()["id"])
    assert status["state"] == "done"
    assert status["params"]["story"] == [{"start": 0.0, "text": "a calm intro"},
                                         {"start": 0.5, "text": "the drums come in"}]
    assert status["params"]["prompt"] is None and isinstance(status["params"]["seed"], int)
    json_story = api.post("/api/generate", data={"story": '[{"start": 0, "text": "intro"}]', "duration": "0.5"})
    assert json_story.status_code == 202, json_story.text


def test_a_draft_skips_the_fine_stage_and_matches_the_draft_pipeline(api, tiny_musiclm):
    answer = api.post("/api/generate", data={"prompt": "a calm piano piece", "duration": "1", "seed": "3",
                                             "draft": "true"})  # as the studio's form sends its checkbox
    assert answer.status_code == 202, answer.text
    status = wait_state(api, answer.json()["id"])
    assert status["state"] == "done" and status["params"]["draft"] is True
    stages = status["progress"]["stages"]
    assert stages["fine"] == {"done": 0, "total": 0} and stages["coarse"]["done"] == stages["coarse"]["total"] > 0
    wav, _ = decode_wav(api.get(f"/api/jobs/{answer.json()['id']}/audio").content)
    expected, _ = tiny_musiclm.as_draft().generate(["a calm piano piece"], 1.0, seed=3)
    full, _ = tiny_musiclm.generate(["a calm piano piece"], 1.0, seed=3)
    np.testing.assert_allclose(wav, expected[0].numpy(), atol=1e-6)
    assert not np.allclose(wav, full[0].numpy(), atol=1e-4)  # the fine levels change the sound
    assert not tiny_musiclm.skip_fine_stage  # the shared model keeps rendering full jobs


@pytest.mark.parametrize(("body", "field", "words"), [
    ({}, "prompt", "missing"),
    ({"prompt": "   "}, "prompt", "empty"),
    ({"prompt": "x" * 2001}, "prompt", "limit is 2000"),
    ({"prompt": "a", "duration": 0}, "duration", "> 0"),
    ({"prompt": "a", "duration": -3}, "duration", "> 0"),
    ({"prompt": "a", "duration": 61}, "duration", "maximum of 60"),
    ({"prompt": "a", "duration": "long"}, "duration", "number"),
    ({"prompt": "a", "seed": -1}, "seed", "[0, 2**63)"),
    ({"prompt": "a", "seed": 1.5}, "seed", "integer"),
    ({"prompt": "a", "temperature": -1}, "temperature", ">= 0"),
    ({"prompt": "a", "temperature": [1, 2]}, "temperature", "three"),
    ({"prompt": "a", "temperature": "hot"}, "temperature", "not a number"),
    ({"prompt": "a", "top_k": 2.5}, "top_k", "whole number"),
    ({"prompt": "a", "top_k": -4}, "top_k", "integer >= 0"),
    ({"prompt": "a", "top_p": 1.5}, "top_p", "(0, 1]"),
    ({"prompt": "a", "cfg": -2}, "cfg", ">= 0"),
    ({"prompt": "a", "cfg": {"x": 1}}, "cfg", "valid"),
    ({"prompt": "a", "story": "0:b"}, "story", "not both"),
    ({"story": "intro without a time", "duration": 2}, "story", "SECONDS:TEXT"),
    ({"story": "1:late start", "duration": 2}, "story[0]", "start at 0"),
    ({"story": "0:a;3:after the end", "duration": 2}, "story[1]", "after the end"),
    ({"story": "0:a;0:same time", "duration": 2}, "story[1]", "not after"),
    ({"story": [{"start": 0, "text": " "}], "duration": 2}, "story[0]", "empty"),
    ({"story": [{"start": 0}], "duration": 2}, "story.0.text", "required"),
    ({"prompt": "a", "colour": "blue"}, "colour", "not permitted"),
    ({"prompt": "a", "draft": "maybe"}, "draft", "boolean"),
])
def test_every_validation_error_is_a_4xx_naming_the_field(api, body, field, words):
    answer = api.post("/api/generate", json=body)
    assert answer.status_code == 422, answer.text
    data = answer.json()
    assert data["field"] == field and words in data["error"], data
    assert data["errors"][0]["field"] == field


def test_malformed_bodies(api):
    bad_json = api.post("/api/generate", content=b"{not json", headers={"content-type": "application/json"})
    assert bad_json.status_code == 400 and bad_json.json()["field"] == "body"
    not_object = api.post("/api/generate", json=["a calm piano piece"])
    assert not_object.status_code == 422 and not_object.json()["field"] == "body"
    wrong_type = api.post("/api/generate", content=b"prompt", headers={"content-type": "text/plain"})
    assert wrong_type.status_code == 415
    huge = api.post("/api/generate", json={"prompt": "a", "pad": "x" * 300_000})
    assert huge.status_code == 413
    twice = api.post("/api/generate", content=b"prompt=a&prompt=b",
                     headers={"content-type": "application/x-www-form-urlencoded"})
    assert twice.status_code == 422 and twice.json()["field"] == "prompt"
    two_files = api.post("/api/generate", data={"prompt": "a"}, files=[("melody", ("a.wav", b"x", "audio/wav")),
                                                                       ("melody", ("b.wav", b"y", "audio/wav"))])
    assert two_files.status_code == 400 and "files" in two_files.json()["error"]


def test_queue_full_answers_429_with_retry_after_and_cancel_frees_it(tiny_musiclm, tmp_path):
    gated = GatedModel(tiny_musiclm)
    with client(make_app(gated, tmp_path, workers=1, max_queue=1)) as api:
        first = api.post("/api/generate", json={"prompt": "first", "duration": 0.5}).json()["id"]
        assert gated.entered.wait(30)
        second = api.post("/api/generate", json={"prompt": "second", "duration": 0.5}).json()["id"]
        queued = api.get(f"/api/jobs/{second}").json()
        assert queued["state"] == "queued" and queued["queue_position"] == 0
        full = api.post("/api/generate", json={"prompt": "third", "duration": 0.5})
        assert full.status_code == 429
        assert int(full.headers["retry-after"]) >= 1 and "queue is full" in full.json()["error"]
        cancelled = api.delete(f"/api/jobs/{second}").json()
        assert cancelled["state"] == "cancelled"
        assert api.post("/api/generate", json={"prompt": "third", "duration": 0.5}).status_code == 202
        gated.gate.set()
        assert wait_state(api, first)["state"] == "done"
        stats = api.get("/api/stats").json()
        assert stats["totals"]["rejected"] == 1 and stats["totals"]["cancelled"] == 1


def test_cancel_stops_a_running_generation(tiny_musiclm, tmp_path):
    gated = GatedModel(tiny_musiclm)
    with client(make_app(gated, tmp_path, workers=1)) as api:
        job = api.post("/api/generate", json={"prompt": "to be cancelled", "duration": 1.0}).json()["id"]
        assert gated.entered.wait(30)
        assert api.get(f"/api/jobs/{job}").json()["state"] == "running"
        assert api.delete(f"/api/jobs/{job}").status_code == 200
        status = wait_state(api, job, timeout=10)
        assert status["state"] == "cancelled"
        assert status["progress"]["stages"]["fine"]["done"] == 0  # it stopped in the first stage
        assert api.get(f"/api/jobs/{job}/audio").status_code == 409
        assert not any((tmp_path / "results").iterdir())
        # a finished job is deleted by a second DELETE
        assert api.delete(f"/api/jobs/{job}").json()["deleted"] is True
        assert api.get(f"/api/jobs/{job}").status_code == 404


def test_concurrent_jobs_finish_with_distinct_results(tiny_musiclm, tmp_path):
    with client(make_app(tiny_musiclm, tmp_path, workers=2)) as api:
        ids = [api.post("/api/generate", json={"prompt": "a jazz trio", "duration": 1.0, "seed": seed}).json()["id"]
               for seed in (1, 2, 1)]
        assert len(set(ids)) == 3
        assert [wait_state(api, i)["state"] for i in ids] == ["done"] * 3
        audio = [decode_wav(api.get(f"/api/jobs/{i}/audio").content)[0] for i in ids]
    assert not np.array_equal(audio[0], audio[1])
    np.testing.assert_array_equal(audio[0], audio[2])  # sharing the model across threads changes nothing


def test_melody_uploads_are_checked_and_refused_without_melody_conditioning(tiny_musiclm, tmp_path):
    with client(make_app(tiny_musiclm, tmp_path, limits=Limits(max_upload_bytes=200_000,
                                                              max_melody_seconds=3.0))) as api:
        def post(content: bytes, name: str = "melody.wav") -> dict:
            answer = api.post("/api/generate", data={"prompt": "a calm piano piece", "duration": "1"},
                              files={"melody": (name, content, "audio/wav")})
            return {"status": answer.status_code, **answer.json()}

        garbage = post(b"RIFF\x00\x00garbage" * 64)
        assert garbage["status"] == 422 and garbage["field"] == "melody" and "not a readable audio" in garbage["error"]
        assert post(b"")["status"] == 422
        truncated = post(wav_bytes(1.0)[:40])
        assert truncated["status"] == 422 and truncated["field"] == "melody"
        too_long = post(wav_bytes(4.0, rate=8_000))
        assert too_long["status"] == 422 and "limit is 3" in too_long["error"]
        too_big = post(wav_bytes(3.0, rate=48_000))
        assert too_big["status"] == 413 and too_big["field"] == "melody"
        silent = post(wav_bytes(1.0, freq=0.0))
        assert silent["status"] == 422 and "silent" in silent["error"]
        good = post(wav_bytes(1.0, rate=16_000), name="../../etc/passwd")
        assert good["status"] == 422 and good["error"] == "melody: this model has no melody conditioning"
        assert api.get("/api/info").json()["melody"] is False


def test_melody_reaches_a_model_that_has_melody_conditioning(tiny_musiclm, tmp_path):
    model = MelodyModel(tiny_musiclm)
    with client(make_app(model, tmp_path)) as api:
        answer = api.post("/api/generate", data={"prompt": "whistled tune", "duration": "1"},
                          files={"melody": ("tune.flac", wav_bytes(1.5, rate=16_000, fmt="FLAC"), "audio/flac")})
        assert answer.status_code == 202, answer.text
        status = wait_state(api, answer.json()["id"])
        assert api.get("/api/info").json()["melody"] is True
    assert status["state"] == "done" and status["params"]["melody_seconds"] == 1.5
    (call,) = model.calls
    assert call["rate"] == 24_000 and call["melody"].shape == (36_000,) and call["texts"] == ["whistled tune"]


@pytest.mark.parametrize("path", ["/api/jobs/0123456789abcdef0123456789abcdef", "/api/jobs/nope",
                                  "/api/jobs/..%2F..%2Fetc%2Fpasswd/audio", "/api/jobs/%2E%2E/audio",
                                  "/api/jobs/0123456789ABCDEF0123456789ABCDEF"])
def test_unknown_or_malformed_ids_are_404(api, path):
    assert api.get(path).status_code == 404


def test_openapi_schema_and_offline_pages(api):
    schema = api.get("/openapi.json").json()
    for path in ("/api/generate", "/api/jobs/{job_id}", "/api/jobs/{job_id}/audio",
                 "/api/jobs/{job_id}/spectrogram.png", "/api/listen/tests/{name}/ratings"):
        assert path in schema["paths"], path
    body = schema["paths"]["/api/generate"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "multipart/form-data"}
    assert "melody" in body["multipart/form-data"]["schema"]["properties"]
    assert "delete" in schema["paths"]["/api/jobs/{job_id}"]
    for page in ("/", "/listen", "/listen/results", "/static/app.js", "/static/listen.js", "/static/style.css"):
        answer = api.get(page)
        assert answer.status_code == 200, page
        assert not re.search(r"(src|href)=\"https?://", answer.text), page  # no CDN: works offline
    assert "default-src 'self'" in api.get("/").headers["content-security-policy"]


def test_results_survive_a_restart(tiny_musiclm, tmp_path):
    with client(make_app(tiny_musiclm, tmp_path)) as api:
        job = api.post("/api/generate", json={"prompt": "kept", "duration": 0.5, "seed": 3}).json()["id"]
        wait_state(api, job)
        first = api.get(f"/api/jobs/{job}/audio").content
    with client(make_app(tiny_musiclm, tmp_path)) as api:
        status = api.get(f"/api/jobs/{job}").json()
        assert status["state"] == "done" and status["params"]["seed"] == 3
        assert api.get(f"/api/jobs/{job}/audio").content == first


def test_foreign_hosts_and_cross_origin_writes_are_refused(api):
    assert api.get("/api/info", headers={"host": "evil.example"}).status_code == 400
    cross = api.post("/api/generate", json={"prompt": "a"}, headers={"origin": "http://evil.example"})
    assert cross.status_code == 403
    same = api.post("/api/generate", json={"prompt": "a", "duration": 0.5}, headers={"origin": "http://localhost"})
    assert same.status_code == 202


def test_eta_and_queue_position_come_from_measured_speed(tiny_musiclm, tmp_path):
    gated = GatedModel(tiny_musiclm)
    gated.gate.set()
    with client(make_app(gated, tmp_path, workers=1)) as api:
        warm = api.post("/api/generate", json={"prompt": "warm up", "duration": 1.0}).json()["id"]
        wait_state(api, warm)
        gated.gate.clear()
        gated.entered.clear()
        running = api.post("/api/generate", json={"prompt": "held", "duration": 1.0}).json()["id"]
        assert gated.entered.wait(30)
        queued = api.post("/api/generate", json={"prompt": "waiting", "duration": 1.0}).json()["id"]
        held, waiting = api.get(f"/api/jobs/{running}").json(), api.get(f"/api/jobs/{queued}").json()
        assert held["eta_seconds"] is not None and held["eta_seconds"] > 0
        assert waiting["queue_position"] == 0 and waiting["eta_seconds"] > held["eta_seconds"]
        gated.gate.set()
        assert wait_state(api, queued)["state"] == "done"
    assert torch.get_num_threads() == 1
