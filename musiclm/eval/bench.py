"""``musiclm bench``: how fast MusicLM generates, next to a MusicGen-architecture peer of the same size.

Measured for MusicLM and, in the same run and process, for the peer:

- **codec**: encode and decode real-time factors (wall seconds per second of audio, all batch rows counted);
- **stages**: tokens per second of each autoregressive stage (MusicLM: semantic, coarse, fine; the peer: its one
  decoder, which emits 4 codebook tokens per step through the delay pattern), all rows counted;
- **end to end** (text -> waveform) real-time factor for each duration and batch size;
- **peak memory** of each end-to-end run: on CPU the peak resident-set growth over the run (sampled every
  5 ms from ``/proc/self/statm``; where that file does not exist, the process's lifetime maximum RSS), on CUDA
  ``torch.cuda.max_memory_allocated``.

The peer is ``transformers``' ``MusicgenForConditionalGeneration`` built from configs with random weights
(:func:`peer_config`): a decoder as wide as MusicLM's stages (width, heads, FFN) and as deep as the three stages
together, so the two language models have about the same number of parameters; 4 codebooks of 2048 codes at
50 Hz with MusicGen's delay pattern; a tiny T5 text encoder; a small EnCodec (32 kHz, strides 8·5·4·4, 16 base
filters, 4 codebooks = 2.2 kbps). Both sample as shipped: MusicLM with its stage defaults (guidance 3 on the
semantic and coarse stages), the peer with MusicGen's (top-k 250, guidance 3). Speed does not depend on what
the weights learned, so random weights measure the architectures; without ``--model`` MusicLM is random at the
``small`` preset sizes (:func:`musiclm.random_model.random_musiclm`).
"""

from __future__ import annotations

import os
import platform
import resource
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from musiclm.eval import EvalError

if TYPE_CHECKING:
    from musiclm.pipeline import MusicLM

PROMPT = "an upbeat funk track with slap bass and brass"
PEER_CODEBOOKS = 4
PEER_CODEBOOK_SIZE = 2048
PEER_SAMPLE_RATE = 32_000
PEER_FRAME_RATE = 50
PEER_TEXT_TOKENS = 16
STAGES = ("semantic", "coarse", "fine")


# ------------------------------------------------------------------------------------------------ memory
class PeakMemory:
    """Peak memory of a block: CUDA allocator peak, or the peak RSS growth sampled in a background thread."""

    def __init__(self, device: torch.device, interval: float = 0.005):
        self.device = device
        self.interval = interval
        self.peak_mb: float | None = None
        self.method = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_rss = 0
        self._max_rss = 0

    @staticmethod
    def _rss() -> int | None:
        try:
            with open("/proc/self/statm") as handle:
                return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return None

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            rss = self._rss()
            if rss is not None and rss > self._max_rss:
                self._max_rss = rss

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.method = "torch.cuda.max_memory_allocated"
            return self
        rss = self._rss()
        if rss is None:
            self.method = "resource.getrusage maxrss (process lifetime maximum)"
            return self
        self.method = "peak RSS growth (sampled /proc/self/statm)"
        self._start_rss = self._max_rss = rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
            return
        if self._thread is None:
            scale = 1 if platform.system() == "Darwin" else 1024  # bytes on macOS, KiB on Linux
            self.peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20
            return
        self._stop.set()
        self._thread.join()
        rss = self._rss()
        if rss is not None:
            self._max_rss = max(self._max_rss, rss)
        self.peak_mb = (self._max_rss - self._start_rss) / 2**20


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _parameters(module: torch.nn.Module | None) -> int:
    return sum(p.numel() for p in module.parameters()) if module is not None else 0


# --------------------------------------------------------------------------------------------- the peer
@dataclass
class PeerSpec:
    """The MusicGen peer's sizes (see the module docstring for how they are chosen)."""

    hidden_size: int = 256
    num_hidden_layers: int = 18
    num_attention_heads: int = 4
    ffn_dim: int = 1024
    dropout: float = 0.1
    max_position_embeddings: int = 2048
    text_d_model: int = 128
    text_layers: int = 2
    encodec_filters: int = 16


def peer_spec_for(model: MusicLM, max_seconds: float) -> PeerSpec:
    """A peer decoder as wide as ``model``'s stages and as deep as the three together, with room for
    ``max_seconds`` of audio."""
    configs = [model.stages[name].config.transformer for name in STAGES]
    widest = max(configs, key=lambda c: c.dim)
    steps = int(np.ceil(max_seconds * PEER_FRAME_RATE)) + PEER_CODEBOOKS + 8
    return PeerSpec(hidden_size=widest.dim, num_hidden_layers=sum(c.depth for c in configs),
                    num_attention_heads=widest.heads, ffn_dim=widest.ffn_dim, dropout=widest.dropout,
                    max_position_embeddings=max(2048, steps))


def build_peer(spec: PeerSpec, device: torch.device, seed: int = 0) -> Any:
    """``MusicgenForConditionalGeneration`` with random weights at ``spec``'s sizes."""
    try:
        import transformers
        from transformers import (
            EncodecConfig,
            MusicgenConfig,
            MusicgenDecoderConfig,
            MusicgenForConditionalGeneration,
            T5Config,
        )
    except ImportError as exc:
        raise EvalError(f"the speed peer needs the `transformers` package ({exc})") from exc
    transformers.logging.set_verbosity_error()
    decoder = MusicgenDecoderConfig(vocab_size=PEER_CODEBOOK_SIZE, num_codebooks=PEER_CODEBOOKS,
                                    hidden_size=spec.hidden_size, num_hidden_layers=spec.num_hidden_layers,
                                    num_attention_heads=spec.num_attention_heads, ffn_dim=spec.ffn_dim,
                                    dropout=spec.dropout, max_position_embeddings=spec.max_position_embeddings)
    text = T5Config(vocab_size=32128, d_model=spec.text_d_model, d_kv=spec.text_d_model // 4,
                    d_ff=4 * spec.text_d_model, num_layers=spec.text_layers, num_heads=4)
    audio = EncodecConfig(sampling_rate=PEER_SAMPLE_RATE, audio_channels=1, num_filters=spec.encodec_filters,
                          upsampling_ratios=[8, 5, 4, 4], codebook_size=PEER_CODEBOOK_SIZE, hidden_size=128,
                          target_bandwidths=[PEER_CODEBOOKS * np.log2(PEER_CODEBOOK_SIZE) * PEER_FRAME_RATE / 1000])
    torch.manual_seed(seed)
    model = MusicgenForConditionalGeneration(MusicgenConfig(text_encoder=text, audio_encoder=audio, decoder=decoder))
    return model.eval().requires_grad_(False).to(device)


def peer_parameters(peer: Any) -> dict[str, int]:
    return {"decoder": _parameters(peer.decoder), "text_encoder": _parameters(peer.text_encoder),
            "audio_encoder": _parameters(peer.audio_encoder)}


# ------------------------------------------------------------------------------------------ measurements
def _codec_times(encode: Callable[[torch.Tensor], Any], decode: Callable[[Any], Any], wav: torch.Tensor,
                 seconds: float, device: torch.device) -> dict[str, float]:
    rows = wav.shape[0]
    _sync(device)
    started = time.perf_counter()
    codes = encode(wav)
    _sync(device)
    encoded = time.perf_counter()
    decode(codes)
    _sync(device)
    decoded = time.perf_counter()
    return {"encode_s": encoded - started, "decode_s": decoded - encoded,
            "encode_rtf": (encoded - started) / (seconds * rows), "decode_rtf": (decoded - encoded) / (seconds * rows)}


def musiclm_codec(model: MusicLM, batch: int, seconds: float, device: torch.device) -> dict[str, float]:
    """Encode/decode RTF of MusicLM's codec on noise (all RVQ levels)."""
    rate = model.codec.sample_rate
    generator = torch.Generator().manual_seed(0)
    wav = (0.1 * torch.randn(batch, int(seconds * rate), generator=generator)).to(device)
    return _codec_times(lambda w: model.codec.encode(w, bitrate=None), model.codec.decode, wav, seconds, device)


def peer_codec(peer: Any, batch: int, seconds: float, device: torch.device) -> dict[str, float]:
    """Encode/decode RTF of the peer's EnCodec on noise (its 4 codebooks)."""
    generator = torch.Generator().manual_seed(0)
    wav = (0.1 * torch.randn(batch, 1, int(seconds * PEER_SAMPLE_RATE), generator=generator)).to(device)
    bandwidth = peer.audio_encoder.config.target_bandwidths[0]

    def encode(w: torch.Tensor) -> torch.Tensor:
        return peer.audio_encoder.encode(w, bandwidth=bandwidth).audio_codes

    def decode(codes: torch.Tensor) -> torch.Tensor:
        return peer.audio_encoder.decode(codes, [None] * batch).audio_values

    with torch.inference_mode():
        return _codec_times(encode, decode, wav, seconds, device)


def musiclm_generation(model: MusicLM, batch: int, seconds: float, device: torch.device,
                       seed: int = 0) -> dict[str, Any]:
    """One text -> waveform generation, timed per stage through the progress callback."""
    marks: dict[str, list[float]] = {}
    totals: dict[str, int] = {}

    def progress(stage: str, done: int, total: int) -> None:
        now = time.perf_counter()
        marks.setdefault(stage, [now, now])[1] = now
        totals[stage] = total

    with PeakMemory(device) as memory:
        _sync(device)
        started = time.perf_counter()
        model.generate([PROMPT] * batch, duration=seconds, seed=seed, progress=progress)
        _sync(device)
        wall = time.perf_counter() - started
    out: dict[str, Any] = {"wall_s": wall, "rtf": wall / (seconds * batch), "peak_mb": memory.peak_mb,
                           "memory_method": memory.method}
    order = [s for s in (*STAGES, "decode") if s in marks]
    if order:
        out["text_s"] = marks[order[0]][0] - started  # MuLan text tokens, before the first stage reports
    lm_tokens, lm_time = 0, 0.0
    for i, stage in enumerate(order):
        end = marks[order[i + 1]][0] if i + 1 < len(order) else started + wall
        span = max(end - marks[stage][0], 1e-9)
        out[f"{stage}_s"] = span
        if stage != "decode":
            tokens = totals[stage] * batch
            out[f"{stage}_tokens"] = tokens
            out[f"{stage}_tok_per_s"] = tokens / span
            lm_tokens, lm_time = lm_tokens + tokens, lm_time + span
    out["lm_tokens"] = lm_tokens
    out["lm_tok_per_s"] = lm_tokens / lm_time if lm_time else None
    return out


def peer_generation(peer: Any, batch: int, seconds: float, device: torch.device, seed: int = 0) -> dict[str, Any]:
    """One text -> waveform generation of the peer (sampling, top-k 250, guidance 3), timed by part."""
    frames = int(round(seconds * PEER_FRAME_RATE))
    steps = frames + PEER_CODEBOOKS - 1  # the delay pattern needs codebooks - 1 extra steps
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, peer.config.text_encoder.vocab_size, (batch, PEER_TEXT_TOKENS), generator=generator)
    mask = torch.ones_like(ids)
    spans = {"text": 0.0, "decode": 0.0}
    starts: dict[str, float] = {}

    def pre_text(*_: Any) -> None:
        _sync(device)
        starts["text"] = time.perf_counter()

    def post_text(*_: Any) -> None:
        _sync(device)
        spans["text"] += time.perf_counter() - starts["text"]

    original_decode = peer.audio_encoder.decode

    def timed_decode(*args: Any, **kwargs: Any) -> Any:
        _sync(device)
        began = time.perf_counter()
        result = original_decode(*args, **kwargs)
        _sync(device)
        spans["decode"] += time.perf_counter() - began
        return result

    hooks = [peer.text_encoder.register_forward_pre_hook(pre_text),
             peer.text_encoder.register_forward_hook(post_text)]
    peer.audio_encoder.decode = timed_decode
    torch.manual_seed(seed)
    try:
        with PeakMemory(device) as memory, torch.inference_mode():
            _sync(device)
            started = time.perf_counter()
            audio = peer.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=True,
                                  top_k=250, guidance_scale=3.0, max_new_tokens=steps)
            _sync(device)
            wall = time.perf_counter() - started
    finally:
        del peer.audio_encoder.decode  # the class's method again
        for hook in hooks:
            hook.remove()
    lm = max(wall - spans["text"] - spans["decode"], 1e-9)
    tokens = steps * PEER_CODEBOOKS * batch
    return {"wall_s": wall, "rtf": wall / (seconds * batch), "peak_mb": memory.peak_mb,
            "memory_method": memory.method, "text_s": spans["text"], "decoder_s": lm, "decode_s": spans["decode"],
            "steps": steps, "lm_tokens": tokens, "lm_tok_per_s": tokens / lm, "steps_per_s": steps * batch / lm,
            "samples": int(audio.shape[-1])}


# -------------------------------------------------------------------------------------------------- bench
def run_bench(model: MusicLM | None = None, batches: Sequence[int] = (1, 4), seconds: Sequence[float] = (10.0,),
              device: str = "cpu", label: str | None = None, peer: bool = True, warmup: bool = True,
              progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure MusicLM (random ``small`` weights when ``model`` is None) and the MusicGen peer; see the module
    docstring. Returns a JSON-ready report whose ``ratios`` divide MusicLM's figure by the peer's."""
    from musiclm.device import resolve_device

    if not batches or min(batches) < 1:
        raise EvalError("--batch takes positive batch sizes")
    if not seconds or min(seconds) <= 0:
        raise EvalError("--seconds takes positive durations")
    dev = resolve_device(device)
    say = progress or (lambda _message: None)
    if model is None:
        from musiclm.random_model import random_musiclm

        say("building MusicLM with random weights at the small preset sizes")
        model = random_musiclm("small", seed=0, device=dev)
        label = label or "random weights, small preset sizes"
    else:
        model.to(dev)
        label = label or str(getattr(model, "source", "model"))
    ours_params = {**{name: model.stages[name].num_parameters() for name in STAGES},
                   "codec": _parameters(model.codec.model), "mulan": _parameters(model.mulan.model)}
    report: dict[str, Any] = {
        "device": str(dev), "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__, "batches": list(batches), "seconds": list(seconds),
        "musiclm": {"label": label, "parameters": ours_params,
                    "lm_parameters": sum(ours_params[s] for s in STAGES)},
    }
    spec = peer_spec_for(model, max(seconds))
    peer_model = None
    if peer:
        import transformers

        say("building the MusicGen peer with random weights")
        peer_model = build_peer(spec, dev)
        params = peer_parameters(peer_model)
        report["peer"] = {"label": "MusicgenForConditionalGeneration, random weights", "spec": asdict(spec),
                          "transformers": transformers.__version__, "parameters": params,
                          "lm_parameters": params["decoder"]}
    if warmup:
        say("warming up")
        model.generate([PROMPT], duration=1.0)
        if peer_model is not None:
            peer_generation(peer_model, 1, 0.2, dev)
    codec_rows, runs = [], []
    for length in seconds:
        for batch in batches:
            say(f"codec, {length:g} s x {batch}")
            row: dict[str, Any] = {"seconds": length, "batch": batch,
                                   "musiclm": musiclm_codec(model, batch, length, dev)}
            if peer_model is not None:
                row["peer"] = peer_codec(peer_model, batch, length, dev)
                row["ratios"] = {k: row["musiclm"][k] / row["peer"][k] for k in ("encode_rtf", "decode_rtf")
                                 if row["peer"][k] > 0}
            codec_rows.append(row)
    for length in seconds:
        for batch in batches:
            say(f"MusicLM end to end, {length:g} s x {batch}")
            run: dict[str, Any] = {"seconds": length, "batch": batch,
                                   "musiclm": musiclm_generation(model, batch, length, dev)}
            if peer_model is not None:
                say(f"peer end to end, {length:g} s x {batch}")
                run["peer"] = peer_generation(peer_model, batch, length, dev)
                ours, theirs = run["musiclm"], run["peer"]
                run["ratios"] = {"rtf": ours["rtf"] / theirs["rtf"],
                                 "lm_tok_per_s": (ours["lm_tok_per_s"] or 0.0) / theirs["lm_tok_per_s"],
                                 "peak_mb": (ours["peak_mb"] / theirs["peak_mb"]
                                             if ours["peak_mb"] and theirs["peak_mb"] and theirs["peak_mb"] > 0
                                             else None)}
            runs.append(run)
    report["codec"] = codec_rows
    report["runs"] = runs
    return report


def _f(value: Any, spec: str = ".2f") -> str:
    if value is None:
        return "-"
    return format(value, spec)


def format_bench(report: dict[str, Any]) -> str:
    """The bench report as Markdown tables (ratios are MusicLM / peer: for RTF and memory < 1 means MusicLM is
    better, for tokens/s > 1 does)."""
    ours = report["musiclm"]
    p = ours["parameters"]
    lines = [f"device {report['device']}, {report['threads']} torch thread(s), torch {report['torch']}",
             f"MusicLM ({ours['label']}): stages {p['semantic'] / 1e6:.1f} + {p['coarse'] / 1e6:.1f} + "
             f"{p['fine'] / 1e6:.1f} M = {ours['lm_parameters'] / 1e6:.1f} M, codec {p['codec'] / 1e6:.2f} M, "
             f"MuLan {p['mulan'] / 1e6:.1f} M"]
    peer = report.get("peer")
    if peer:
        q, s = peer["parameters"], peer["spec"]
        lines.append(f"MusicGen peer (transformers {peer['transformers']}, random): decoder "
                     f"{s['num_hidden_layers']} x {s['hidden_size']} ({s['num_attention_heads']} heads, FFN "
                     f"{s['ffn_dim']}, 4 codebooks, delay pattern) {q['decoder'] / 1e6:.1f} M, T5 "
                     f"{q['text_encoder'] / 1e6:.1f} M, EnCodec {q['audio_encoder'] / 1e6:.2f} M")
    lines += ["", "Codec (RTF = wall seconds per second of audio, all rows; lower is faster)", ""]
    lines.append("| audio s | batch | MusicLM encode | peer encode | ratio | MusicLM decode | peer decode | ratio |")
    lines.append("|---|---|---|---|---|---|---|---|")
    for row in report["codec"]:
        o, t, r = row["musiclm"], row.get("peer", {}), row.get("ratios", {})
        lines.append(f"| {row['seconds']:g} | {row['batch']} | {_f(o['encode_rtf'], '.4f')} | "
                     f"{_f(t.get('encode_rtf'), '.4f')} | {_f(r.get('encode_rtf'))} | {_f(o['decode_rtf'], '.4f')} | "
                     f"{_f(t.get('decode_rtf'), '.4f')} | {_f(r.get('decode_rtf'))} |")
    lines += ["", "Generation, text -> waveform (tok/s counts every sampled token of every row; peak MB is "
              "memory growth during the run)", ""]
    lines.append("| audio s | batch | semantic tok/s | coarse tok/s | fine tok/s | MusicLM LM tok/s | peer tok/s | "
                 "tok/s ratio | MusicLM RTF | peer RTF | RTF ratio | MusicLM peak MB | peer peak MB |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for run in report["runs"]:
        o, t, r = run["musiclm"], run.get("peer", {}), run.get("ratios", {})
        lines.append(f"| {run['seconds']:g} | {run['batch']} | {_f(o.get('semantic_tok_per_s'), '.0f')} | "
                     f"{_f(o.get('coarse_tok_per_s'), '.0f')} | {_f(o.get('fine_tok_per_s'), '.0f')} | "
                     f"{_f(o.get('lm_tok_per_s'), '.0f')} | {_f(t.get('lm_tok_per_s'), '.0f')} | "
                     f"{_f(r.get('lm_tok_per_s'))} | {_f(o['rtf'])} | {_f(t.get('rtf'))} | {_f(r.get('rtf'))} | "
                     f"{_f(o.get('peak_mb'), '.0f')} | {_f(t.get('peak_mb'), '.0f')} |")
    lines += ["", "Ratios are MusicLM / peer. MusicLM samples 3 stages (25 semantic + 4 x 50 coarse + 8 x 50 fine "
              "tokens per second of audio); the peer samples one decoder that emits 4 tokens per 50 Hz step."]
    return "\n".join(lines)
