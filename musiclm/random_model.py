"""Randomly initialised, complete MusicLM pipelines: for tests, front-end development and speed benchmarks.

``random_musiclm("tiny")`` builds every component at toy size in about a second (the text tower is the real
MiniLM sentence encoder, the rest is random), so the API, the CLI, the server and the tests can run end to end
without a trained model. ``random_musiclm("small")`` has the exact sizes of the ``small`` presets, which is
what speed measurements of the architecture need before (or independently of) training. The audio such a
model makes is noise: it says nothing about quality.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from musiclm.errors import ConfigError
from musiclm.lm.config import TRANSFORMER_PRESETS, TransformerConfig
from musiclm.lm.layout import TokenSpaces
from musiclm.lm.stage import StageLM
from musiclm.lm.stage_config import DEFAULT_SAMPLING, StageConfig, stage_preset
from musiclm.pipeline import STAGE_NAMES, MusicLM
from musiclm.weights import round_fp16

SIZES = ("tiny", "small")


def _tiny_parts() -> tuple:
    from musiclm.codec.api import Codec
    from musiclm.codec.config import CodecConfig
    from musiclm.codec.model import SoundStream
    from musiclm.mulan.config import AudioTowerConfig, MuLanConfig, QuantizerConfig, TextTowerConfig
    from musiclm.mulan.model import MuLanModel
    from musiclm.semantic.config import SemanticModelConfig
    from musiclm.semantic.model import SemanticModel

    codec = Codec(SoundStream(CodecConfig(encoder_channels=4, decoder_channels=4, max_channels=32, latent_dim=8,
                                          dilations=(1, 3), init_vectors=256, kmeans_iters=4)))
    audio = AudioTowerConfig(kind="conv", n_fft=512, hop_length=240, n_mels=32, conv_channels=(4, 8), hidden=32,
                             blocks=1, heads=2, patch_mels=8, patch_frames=8, max_time_patches=32,
                             window_seconds=2.0, window_stride_seconds=0.5, min_seconds=0.5, time_mask=10)
    mulan_config = MuLanConfig(embed_dim=16, audio=audio, text=TextTowerConfig(hidden=32),
                               quantizer=QuantizerConfig(num_quantizers=12, codebook_size=8))
    semantic_config = SemanticModelConfig(n_fft=512, n_mels=32, conv_channels=32, d_model=32, num_layers=2,
                                          num_heads=2, ffn_dim=64, dropout=0.0, pos_conv_kernel=5, pos_conv_groups=4,
                                          target_sizes=(8,))
    return codec, MuLanModel(mulan_config), SemanticModel(semantic_config), 16, 2


def _small_parts() -> tuple:
    from musiclm.codec.api import Codec
    from musiclm.codec.config import CodecConfig
    from musiclm.codec.model import SoundStream
    from musiclm.config import preset
    from musiclm.mulan.model import MuLanModel
    from musiclm.semantic.model import SemanticModel

    mulan_config = preset("mulan", "small").model
    semantic_training = preset("semantic", "small")
    return (Codec(SoundStream(CodecConfig())), MuLanModel(mulan_config), SemanticModel(semantic_training.model),
            semantic_training.tokenizer.num_clusters, semantic_training.tokenizer.layer)


def _random_quantizer(levels: int, codebook: int, dim: int, generator: torch.Generator):
    """A residual quantiser with random unit codewords whose scale halves with every level."""
    from musiclm.mulan.quantizer import EmbeddingQuantizer

    quantizer = EmbeddingQuantizer(levels, codebook, dim)
    with torch.no_grad():
        books = torch.randn(quantizer.codebooks.shape, generator=generator)
        scale = 0.5 ** torch.arange(levels, dtype=torch.float32)  # residual levels shrink
        quantizer.codebooks.copy_(torch.nn.functional.normalize(books, dim=-1) * scale[:, None, None])
    return quantizer


def _random_melody(size: str, generator: torch.Generator):
    """A melody model (random weights, random quantiser: 3 x 8 tiny, 12 x 256 small)."""
    from musiclm.config import preset
    from musiclm.melody.api import MelodyModel
    from musiclm.melody.config import EncoderConfig, FrontendConfig, MelodyConfig
    from musiclm.melody.model import MelodyEmbedder

    if size == "tiny":
        config = MelodyConfig(embed_dim=16, window_seconds=1.0, hop_seconds=0.6, min_seconds=0.25,
                              frontend=FrontendConfig(n_fft=2048, min_midi=48, octaves=4),
                              encoder=EncoderConfig(dim=32, layers=1, heads=2, ffn=64, patch_frames=5, dropout=0.0))
        levels, codebook = 3, 8
    else:
        config, levels, codebook = preset("melody", "small").model, 12, 256
    quantizer = _random_quantizer(levels, codebook, config.embed_dim, generator)
    return MelodyModel(MelodyEmbedder(config).eval(), quantizer)


def random_musiclm(size: str = "tiny", seed: int = 0, device: str | torch.device = "cpu",
                   melody: bool = False, contour: bool | tuple[str, ...] = False) -> MusicLM:
    """A complete MusicLM with random weights at ``size`` ("tiny" or "small"), deterministic in ``seed``;
    ``melody`` adds a melody model and a semantic stage that takes its tokens; ``contour`` a semantic stage (True)
    or the named stages (``("semantic", "coarse")``) that take a frame-rate pitch contour (their aligned
    embeddings random rather than zero, so the contour matters)."""
    if size not in SIZES:
        raise ConfigError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    from musiclm.mulan.api import MuLan
    from musiclm.semantic.tokenizer import SemanticTokenizer

    torch.manual_seed(seed)
    codec, mulan_model, semantic_model, clusters, layer = _tiny_parts() if size == "tiny" else _small_parts()
    generator = torch.Generator().manual_seed(seed)
    qconfig = mulan_model.config.quantizer
    quantizer = _random_quantizer(qconfig.num_quantizers, qconfig.codebook_size, mulan_model.config.embed_dim,
                                  generator)
    mulan = MuLan(mulan_model, quantizer)
    centroids = torch.randn(clusters, semantic_model.config.d_model, generator=generator)
    tokenizer = SemanticTokenizer(semantic_model, centroids, layer)
    spaces = TokenSpaces(mulan_levels=qconfig.num_quantizers, mulan_codebook=qconfig.codebook_size,
                         semantic_clusters=clusters, acoustic_codebook=codec.codebook_size,
                         coarse_levels=codec.config.coarse_levels,
                         fine_levels=codec.num_quantizers - codec.config.coarse_levels)
    melody_model = _random_melody(size, generator) if melody else None
    stages = {}
    for name in STAGE_NAMES:
        if size == "tiny":
            windows = {"semantic": (4.0, 2.0), "coarse": (2.0, 1.0), "fine": (1.0, 0.5)}[name]
            transformer = TransformerConfig(dim=32, depth=2, heads=2, ffn_dim=64, dropout=0.0)
            config = StageConfig(stage=name, tokens=spaces, transformer=transformer, window_seconds=windows[0],
                                 stride_seconds=windows[1], sampling=DEFAULT_SAMPLING[name])
        else:
            config = replace(stage_preset(name, "small").model, tokens=spaces,
                             transformer=TransformerConfig(**TRANSFORMER_PRESETS["small"]))
        if name == "semantic" and melody_model is not None:
            from musiclm.lm.recipe import melody_slots

            slots = melody_slots(config.window_seconds, melody_model.window_seconds, melody_model.hop_seconds)
            config = replace(config, tokens=replace(
                spaces, melody_levels=melody_model.num_quantizers, melody_codebook=melody_model.codebook_size,
                melody_slots=slots, melody_hop_seconds=melody_model.hop_seconds),
                melody_fingerprint=melody_model.fingerprint())
        if contour and name in (("semantic",) if contour is True else contour):
            from musiclm.melody.contour import CONTOUR_VALUES, PitchContour

            config = replace(config, tokens=replace(config.tokens, contour_values=CONTOUR_VALUES),
                             contour_conditioning=True,
                             contour_fingerprint=PitchContour(frame_rate=spaces.semantic_rate).fingerprint())
        stages[name] = StageLM(config.resolved())
        aligned = stages[name].model.aligned_embedding
        if aligned is not None:
            with torch.no_grad():
                aligned.weight[1:].normal_(std=0.5, generator=generator)
        round_fp16(stages[name].model)  # what saving keeps: a saved and reloaded copy samples the same tokens
    return MusicLM(mulan, codec, stages["semantic"], stages["coarse"], stages["fine"], tokenizer, device,
                   melody_model)
