"""``StageLM``: one generation stage (a layout + a Transformer) that samples in sliding windows, and its files.

A model folder holds ``config.yaml`` (a :class:`StageConfig`) and ``model.safetensors`` (fp16 weights).
Loading never unpickles.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import save_file

from musiclm import __version__
from musiclm.config import load_yaml, save_yaml
from musiclm.errors import ConfigError, MusicLMError
from musiclm.fileio import atomic_path
from musiclm.lm.layout import StageLayout
from musiclm.lm.sampling import SamplingParams, generate_tokens
from musiclm.lm.stage_config import StageConfig
from musiclm.lm.transformer import Transformer
from musiclm.train.checkpoint import load_state, read_safetensors

CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "model.safetensors"

ConditionFn = Callable[[int, int, int], tuple[torch.Tensor, torch.Tensor | None]]
"""``(start, first_new, end) -> (condition ids [B, L], null-condition ids [B, L] or None)`` of the window
covering target frames ``[start, end)`` whose new (sampled) frames begin at ``first_new``."""
ProgressFn = Callable[[int, int], None]
"""``(tokens done, tokens in all) -> None``."""


class StageError(MusicLMError):
    """A stage model folder or a stage call is unusable."""


class StageLM:
    """One of the three MusicLM stages, ready to sample.

    :meth:`generate` continues (or starts) a ``[B, frames, levels]`` target sequence in windows: the first
    window samples up to ``window`` frames; each later one keeps the last ``window - stride`` frames as context
    and samples ``stride`` new ones, with the condition of its own time span (so story mode can switch MuLan
    tokens between windows).
    """

    def __init__(self, config: StageConfig, model: Transformer | None = None, device: str | torch.device = "cpu"):
        config.validate()
        self.config = config
        self.layout: StageLayout = config.layout()
        self.model = (model if model is not None else Transformer(config.transformer)).eval().requires_grad_(False)
        self.source: str | None = None
        self.decode_dtype: torch.dtype | None = None  # set by :meth:`to`
        self.to(device)

    # ----------------------------------------------------------------------------------------- basics
    @property
    def name(self) -> str:
        return self.config.stage

    @property
    def frame_rate(self) -> int:
        return self.layout.frame_rate

    @property
    def levels(self) -> int:
        return self.layout.levels

    def to(self, device: str | torch.device) -> StageLM:
        """Move to ``device``. On a CPU one-token decoding steps read fp16 copies of the weights (they are
        memory-bound there: about twice as fast, logits within ~1e-3); elsewhere the float32 weights."""
        self.device = torch.device(device)
        self.model.to(self.device)
        self.decode_dtype = torch.float16 if self.device.type == "cpu" else None
        return self

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def tokens_to_sample(self, frames: int, prompt_frames: int = 0) -> int:
        """Sampling steps :meth:`generate` takes for ``frames`` frames after a prompt of ``prompt_frames``."""
        return max(frames - prompt_frames, 0) * self.levels

    # ------------------------------------------------------------------------------------------ files
    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``config.yaml`` and fp16 ``model.safetensors`` (each atomically)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().half().contiguous() if v.is_floating_point() else v.detach().cpu().contiguous()
                   for k, v in self.model.state_dict().items()}
        tensors = _untie(tensors)
        meta = {"format": "musiclm-stage", "stage": self.name, "musiclm_version": __version__}
        with atomic_path(folder / WEIGHTS_FILE) as tmp:
            save_file(tensors, str(tmp), metadata=meta)
        save_yaml(self.config, folder / CONFIG_FILE)
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike[str], device: str | torch.device = "cpu",
                        stage: str | None = None) -> StageLM:
        """Load a folder written by :meth:`save` (``musiclm lm export``); ``stage`` checks which stage it is."""
        folder = Path(folder)
        if not (folder / CONFIG_FILE).exists() or not (folder / WEIGHTS_FILE).exists():
            raise StageError(f"{folder}: not a stage model folder (needs {CONFIG_FILE} and {WEIGHTS_FILE}; make "
                             f"one with `musiclm lm export RUN -o DIR`)")
        config = load_yaml(StageConfig, folder / CONFIG_FILE)
        if stage is not None and config.stage != stage:
            raise StageError(f"{folder} holds the {config.stage} stage, not the {stage} stage")
        model = Transformer(config.transformer)
        tensors = read_safetensors(folder / WEIGHTS_FILE, StageError)
        load_state(model, tensors, folder / WEIGHTS_FILE)
        lm = cls(config, model, device)
        lm.source = str(folder)
        return lm

    # ------------------------------------------------------------------------------------- sampling
    @torch.no_grad()
    def generate(self, frames: int, condition: ConditionFn, batch: int, *, prompt: torch.Tensor | None = None,
                 params: SamplingParams | None = None, generator: torch.Generator | None = None,
                 progress: ProgressFn | None = None, use_cache: bool = True,
                 contour: torch.Tensor | None = None, forced: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, frames, levels]`` target values: ``prompt`` (``[B, p, levels]`` or ``[B, p]``) then sampled ones.

        ``condition(start, first_new, end)`` gives the condition of each window (see :data:`ConditionFn`).
        ``contour`` (``[B, >= frames]`` pitch-contour values at this stage's frame rate, for a stage trained with
        one) is the melody each target frame is sampled under. ``forced`` (``[B, >= frames, levels]`` values of
        every frame, the prompt's included; -1 where sampled) fixes the given values of the frames to sample: the
        stage samples the rest around them (e.g. the upper RVQ levels of given first-level codes).
        """
        params = params or self.config.sampling
        params.validate()
        generator = generator or torch.Generator(device="cpu").manual_seed(0)
        window = self.config.window_frames(self.layout)
        stride = self.config.stride_frames(self.layout)
        if frames < 0:
            raise StageError(f"frames must be >= 0, got {frames}")
        out = self._prompt(prompt, batch)
        have = out.shape[1]
        if contour is not None:
            if not self.config.tokens.contour_values:
                raise StageError(f"this {self.name} stage was trained without a pitch contour")
            if contour.dim() != 2 or contour.shape[0] != batch or contour.shape[1] < frames:
                raise StageError(f"expected a pitch contour of shape [{batch}, >= {frames}], got "
                                 f"{tuple(contour.shape)}")
        if forced is not None:
            if forced.dim() != 3 or forced.shape[0] != batch or forced.shape[1] < frames or \
                    forced.shape[2] != self.levels:
                raise StageError(f"expected forced values of shape [{batch}, >= {frames}, {self.levels}], got "
                                 f"{tuple(forced.shape)}")
            forced = forced.long().cpu()
        if have >= frames:
            return out[:, :frames]
        total_steps = (frames - have) * self.levels
        done = 0
        while have < frames:
            context = min(have, window - stride)  # stride == window: independent windows
            new = min(window - context, frames - have)
            start = have - context
            cond, uncond = condition(start, have, have + new)
            if cond.shape[0] != batch:
                raise StageError(f"the condition has batch {cond.shape[0]}, expected {batch}")
            past = self.layout.encode_targets(out[:, start:]).to(self.device)
            prefix = torch.cat([cond.to(self.device), past], dim=1)
            uncond_prefix = None
            if uncond is not None and params.cfg_scale != 1.0:
                uncond_prefix = torch.cat([uncond.to(self.device), past], dim=1)

            def step(i: int, _done: int = done) -> None:  # i = steps done in this window
                if progress is not None:
                    progress(_done + i, total_steps)

            aligned = None
            if contour is not None:
                aligned = self.layout.contour_ids(contour[:, start:have + new], cond.shape[1], have + new - start,
                                                  batch)
            forced_ids = None
            if forced is not None:
                window_values = forced[:, have:have + new]
                free = window_values < 0
                forced_ids = self.layout.encode_targets(window_values.clamp(min=0))
                forced_ids = forced_ids.masked_fill(free.reshape(batch, -1), -1)
            ids = generate_tokens(self.model, prefix, self.layout.target_ranges(new).to(self.device), params,
                                  generator, uncond_prefix=uncond_prefix, use_cache=use_cache, progress=step,
                                  weight_dtype=self.decode_dtype if use_cache else None, aligned=aligned,
                                  forced=forced_ids)
            out = torch.cat([out, self.layout.decode_targets(ids).cpu()], dim=1)
            have = out.shape[1]
            done += new * self.levels
        return out

    def _prompt(self, prompt: torch.Tensor | None, batch: int) -> torch.Tensor:
        if prompt is None:
            return torch.zeros(batch, 0, self.levels, dtype=torch.long)
        if prompt.dim() == 2 and self.levels == 1:
            prompt = prompt.unsqueeze(-1)
        if prompt.dim() != 3 or prompt.shape[0] != batch or prompt.shape[2] != self.levels:
            raise StageError(f"expected a {self.name} prompt of shape [{batch}, frames, {self.levels}], "
                             f"got {tuple(prompt.shape)}")
        return prompt.long().cpu()


def _untie(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses shared storage: give tied tensors their own copy."""
    seen: dict[int, str] = {}
    out = {}
    for key, value in tensors.items():
        ptr = value.data_ptr()
        out[key] = value.clone() if ptr in seen else value
        seen.setdefault(ptr, key)
    return out



def check_stage_chain(semantic: StageLM, coarse: StageLM, fine: StageLM) -> None:
    """The three stages must agree on their token spaces (and, when recorded, on their token store)."""
    spaces = [s.config.tokens for s in (semantic, coarse, fine)]
    a, b, c = spaces
    if (a.mulan_levels, a.mulan_codebook, a.semantic_clusters) != (b.mulan_levels, b.mulan_codebook,
                                                                   b.semantic_clusters):
        raise ConfigError("the semantic and coarse stages disagree on MuLan or semantic token spaces")
    if (b.acoustic_codebook, b.coarse_levels) != (c.acoustic_codebook, c.coarse_levels):
        raise ConfigError("the coarse and fine stages disagree on the acoustic token space")
    for component in STORE_COMPONENTS:
        prints = {(stage.name, used[component]) for stage in (semantic, coarse, fine)
                  if component in (used := tokens_used(stage.config))}
        if len({p for _, p in prints}) > 1:
            names = ", ".join(sorted(f"{name}: {p}" for name, p in prints))
            raise ConfigError(f"the stages were trained on tokens of different {STORE_COMPONENTS[component]} models "
                              f"({names}); retrain or fine-tune them on one token store")


STORE_COMPONENTS = {"codec": "codec", "semantic": "semantic tokenizer", "mulan": "MuLan"}
"""The models whose fingerprints a token store's fingerprint joins, in its order (``codec/semantic/mulan``)."""


def store_mismatch(config: StageConfig, store_print: str) -> list[str]:
    """The models (by name) whose tokens a stage uses and a store (its joined fingerprint) holds from another
    model; empty when they agree or the stage recorded nothing."""
    parts = store_print.split("/")
    have = dict(zip(STORE_COMPONENTS, parts, strict=True)) if len(parts) == len(STORE_COMPONENTS) else {}
    return [STORE_COMPONENTS[c] for c, fp in tokens_used(config).items() if have.get(c) != fp]


def tokens_used(config: StageConfig) -> dict[str, str]:
    """The fingerprints of the models whose tokens a stage reads or writes (empty when none was recorded):
    the semantic stage uses MuLan and semantic tokens, the coarse stage MuLan, semantic (unless it is the
    ablation without them) and codec tokens, the fine stage codec tokens only. Stages may come from different
    stores as long as they agree on every model they share (a fine stage outlives a retrained MuLan)."""
    parts = config.store_fingerprint.split("/") if config.store_fingerprint else []
    if len(parts) != len(STORE_COMPONENTS):
        return {}
    prints = dict(zip(STORE_COMPONENTS, parts, strict=True))
    used = {"semantic": ("semantic", "mulan"), "coarse": ("codec", "semantic", "mulan"),
            "fine": ("codec",)}[config.stage]
    if config.stage == "coarse" and not config.semantic_conditioning:
        used = ("codec", "mulan")
    return {k: prints[k] for k in used}
