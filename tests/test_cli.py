from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import soundfile as sf

from musiclm import __version__
from musiclm.cli import main


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "musiclm", *args], capture_output=True, text=True, timeout=120)


def test_version_and_help():
    out = run("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"musiclm {__version__}"
    help_out = run("--help")
    assert help_out.returncode == 0 and "info" in help_out.stdout and "audio" in help_out.stdout


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "usage" in capsys.readouterr().err


def test_info_json_is_one_document(capsys):
    assert main(["info", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["musiclm"] == __version__ and "torch" in data and "train" in data["presets"]


def test_audio_convert_and_info(tmp_path, sine, capsys):
    sf.write(tmp_path / "in.wav", np.stack([sine(440, 1, 44_100)] * 2, axis=1), 44_100)
    assert main(["audio", "convert", str(tmp_path / "in.wav"), str(tmp_path / "out.flac"),
                 "--normalize", "peak", "--peak-db", "-3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["sample_rate"] == 24_000 and abs(result["seconds"] - 1.0) < 1e-3
    assert main(["audio", "info", str(tmp_path / "out.flac"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["channels"] == 1 and abs(20 * np.log10(info["peak"]) + 3.0) < 0.01


def test_errors_are_one_line_on_stderr_with_nonzero_exit(tmp_path):
    out = run("audio", "info", str(tmp_path / "missing.wav"))
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.strip().splitlines() == [f"musiclm: error: {tmp_path / 'missing.wav'}: no such file"]
    (tmp_path / "silent.wav").write_bytes(b"")
    sf.write(tmp_path / "silent.wav", np.zeros(100, np.float32), 24_000)
    bad = run("audio", "convert", str(tmp_path / "silent.wav"), str(tmp_path / "x.wav"))
    assert bad.returncode == 1 and "all silent" in bad.stderr


def test_config_show_yaml_and_unknown_preset(capsys):
    assert main(["config", "show", "train"]) == 0
    assert "max_steps:" in capsys.readouterr().out
    assert main(["config", "show", "train", "--preset", "giant"]) == 1
    assert "no preset 'giant'" in capsys.readouterr().err
