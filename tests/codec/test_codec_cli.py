"""``musiclm codec ...``: encode -> decode and roundtrip on files, train a few steps and export."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
from codec_helpers import one_torch_thread, tiny_codec_config, tiny_training_config, write_corpus  # noqa: F401

from musiclm.audio import audio_info, load_audio, save_audio
from musiclm.codec.api import Codec
from musiclm.codec.cli import CodecUsageError, register
from musiclm.codec.model import SoundStream
from musiclm.config import save_yaml
from musiclm.errors import MusicLMError


def run(argv: list[str], capsys) -> dict:
    """Parse and run one ``musiclm codec ...`` command with --json; return its JSON result."""
    parser = argparse.ArgumentParser(prog="musiclm")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["codec", *argv, "--json"])
    capsys.readouterr()
    args.handler(args)
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    return Codec(SoundStream(tiny_codec_config(kmeans_init=False))).save(tmp_path_factory.mktemp("codec") / "model")


def test_encode_then_decode_restores_the_length(model_dir, tmp_path, capsys):
    wav = (0.2 * np.sin(np.arange(16_001) * 0.05)).astype(np.float32)
    stereo = np.stack([wav, 0.5 * wav])
    save_audio(tmp_path / "in.wav", stereo, 16_000)
    enc = run(["encode", str(tmp_path / "in.wav"), "-o", str(tmp_path / "codes.npy"), "--bitrate", "3",
               "--model", str(model_dir), "--device", "cpu"], capsys)
    codes = np.load(tmp_path / "codes.npy")
    assert codes.shape == (6, enc["frames"]) and codes.dtype == np.int64 and enc["bitrate_kbps"] == 3.0
    assert (tmp_path / "codes.json").exists()
    dec = run(["decode", str(tmp_path / "codes.npy"), "-o", str(tmp_path / "out.wav"), "--model", str(model_dir)],
              capsys)
    info = audio_info(tmp_path / "out.wav")
    assert info["sample_rate"] == 24_000 and info["channels"] == 1
    assert info["frames"] == dec["samples"] == round(16_001 * 24_000 / 16_000)
    run(["decode", str(tmp_path / "codes.npy"), "-o", str(tmp_path / "orig.wav"), "--model", str(model_dir),
         "--original-rate"], capsys)
    assert audio_info(tmp_path / "orig.wav")["frames"] == 16_001


def test_roundtrip_reports_quality(model_dir, tmp_path, capsys):
    wav = (0.2 * np.sin(np.arange(12_345) * 0.07)).astype(np.float32)
    save_audio(tmp_path / "in.wav", wav, 24_000)
    result = run(["roundtrip", str(tmp_path / "in.wav"), "-o", str(tmp_path / "out.wav"), "--bitrate", "1.5",
                  "--model", str(model_dir)], capsys)
    assert result["levels"] == 3 and {"mel_l1", "stft", "si_sdr"} <= set(result)
    out, rate = load_audio(tmp_path / "out.wav", sample_rate=None, allow_silent=True)
    assert rate == 24_000 and len(out) == 12_345


def test_missing_model_and_bad_codes_are_clear_errors(model_dir, tmp_path, capsys):
    save_audio(tmp_path / "in.wav", np.full(100, 0.1, dtype=np.float32), 24_000)
    with pytest.raises(CodecUsageError, match="no codec model"):
        run(["encode", str(tmp_path / "in.wav"), "-o", str(tmp_path / "c.npy"), "--model", str(tmp_path / "none")],
            capsys)
    np.save(tmp_path / "bad.npy", np.zeros((12, 3), dtype=np.float32))
    with pytest.raises(MusicLMError, match="integer codes"):
        run(["decode", str(tmp_path / "bad.npy"), "-o", str(tmp_path / "x.wav"), "--model", str(model_dir)], capsys)


def test_train_a_few_steps_then_export(tmp_path, capsys):
    corpus = write_corpus(tmp_path / "corpus", clips=4, seconds=1.0, valid=1)
    config = tiny_training_config(**{"train.max_steps": 8, "train.checkpoint_every": 4, "eval_clips": 0,
                                     "sample_clips": 0, "adversarial_start": 4, "discriminator_warmup": 1})
    save_yaml(config, tmp_path / "tiny.yaml")
    run_dir = tmp_path / "run"
    first = run(["train", "--corpus", str(corpus), "--run-dir", str(run_dir), "--config", str(tmp_path / "tiny.yaml"),
                 "--budget-steps", "5", "--set", "train.seed=3", "--threads", "1", "--device", "cpu"], capsys)
    assert first["step"] == 5 and first["reason"] == "budget"
    assert (run_dir / "codec-train.yaml").exists()
    second = run(["train", "--corpus", str(corpus), "--run-dir", str(run_dir), "--config", str(tmp_path / "tiny.yaml"),
                  "--set", "train.seed=3", "--device", "cpu"], capsys)
    assert second["step"] == 8 and second["reason"] == "finished"  # resumed
    exported = run(["export", str(run_dir), "-o", str(tmp_path / "model")], capsys)
    assert exported["size_mb"] < 16 and "step 8" in exported["weights_from"]
    codec = Codec.from_pretrained(tmp_path / "model")
    assert codec.encode(np.full(1000, 0.1, dtype=np.float32)).shape == (1, 12, 3)
