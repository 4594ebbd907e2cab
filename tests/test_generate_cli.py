"""``musiclm generate`` on a tiny random model folder: files, options, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf

from musiclm.audio import save_audio
from musiclm.cli import main


@pytest.fixture(autouse=True)
def one_openmp_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def test_generate_writes_wav_png_and_json(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "song.wav"
    code = main(["generate", "a calm piano piece", "-d", "1.5", "-o", str(out), "--model", str(tiny_model_dir),
                 "--plot", "-n", "2", "--seed", "4", "--threads", "1", "--no-progress", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    paths = [f["path"] for f in result["files"]]
    assert paths == [str(tmp_path / "song-1.wav"), str(tmp_path / "song-2.wav")]
    for entry in result["files"]:
        info = sf.info(entry["path"])
        assert info.samplerate == 24_000 and info.channels == 1 and info.frames == 36_000
        assert Path(entry["spectrogram"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_draft_flag_makes_audio_of_the_same_length(tiny_model_dir, tmp_path):
    out = tmp_path / "draft.wav"
    assert main(["generate", "a calm piano piece", "-d", "1.5", "-o", str(out), "--model", str(tiny_model_dir),
                 "--draft", "--threads", "1", "--no-progress"]) == 0
    assert sf.info(str(out)).frames == 36_000


def test_generate_story_and_continuation(tiny_model_dir, tmp_path, sine, capsys):
    out = tmp_path / "story.wav"
    assert main(["generate", "--story", "0:a calm intro;1:loud drums", "-d", "2", "-o", str(out),
                 "--model", str(tiny_model_dir), "--no-progress"]) == 0
    assert sf.info(str(out)).frames == 48_000
    prompt = save_audio(tmp_path / "prompt.wav", sine(seconds=1.0, sr=16_000), 16_000)
    cont = tmp_path / "cont.wav"
    assert main(["generate", "a calm piano piece", "--continue", str(prompt), "-d", "2", "-o", str(cont),
                 "--model", str(tiny_model_dir), "--no-progress"]) == 0
    assert sf.info(str(cont)).frames == 48_000


@pytest.mark.parametrize("argv, message", [
    (["generate"], "give a PROMPT"),
    (["generate", "   "], "empty"),
    (["generate", "x", "-d", "0"], "> 0"),
    (["generate", "x", "-d", "100000"], "maximum"),
    (["generate", "--story", "calm intro"], "SECONDS:TEXT"),
    (["generate", "x", "--story", "0:y"], "not both"),
    (["generate", "x", "--temperature", "1,2"], "three"),
    (["generate", "x", "--top-k", "many"], "top-k"),
    (["generate", "x", "-o", "song.mp3"], ".wav or .flac"),
    (["generate", "x", "--continue", "/nonexistent/file.wav"], "--continue"),
])
def test_bad_input_gets_a_clear_error(tiny_model_dir, tmp_path, capsys, argv, message):
    argv = [*argv, "--model", str(tiny_model_dir), "--no-progress"]
    if "-o" not in argv:
        argv += ["-o", str(tmp_path / "x.wav")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("musiclm: error:") and message in err


def test_missing_model_folder_says_what_to_do(tmp_path, capsys):
    assert main(["generate", "x", "--model", str(tmp_path / "none"), "-o", str(tmp_path / "x.wav")]) == 1
    assert "incomplete model folder" in capsys.readouterr().err
