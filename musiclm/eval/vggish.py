"""VGGish (Hershey et al., 2017): the audio embedding network behind FAD_VGG, with its exact input pipeline.

Only the architecture and the front end are written here; no weights are downloaded. Load weights the user
supplies (converted once from the public AudioSet release) with :func:`load_vggish`, or build random weights
for tests with :func:`random_vggish`.

Input pipeline (as the AudioSet release): mono audio resampled to 16 kHz; STFT magnitude with a 25 ms periodic
Hann window (400 samples, FFT size 512), 10 ms hop, no centre padding; 64 mel bands from 125 to 7500 Hz with
triangles drawn in the HTK mel domain (``1127 ln(1 + f / 700)``), the DC bin unused; ``log(mel + 0.01)``;
non-overlapping examples of 96 frames (0.96 s) of shape ``[96, 64]``; an incomplete last example is dropped, and
audio shorter than one example is zero-padded to one.

Network: 3x3 convolutions (stride 1, same padding, ReLU) 64 | pool | 128 | pool | 256, 256 | pool | 512, 512 |
pool (2x2 max pools), flatten 6 x 4 x 512 = 12288, fully connected 4096, 4096 (ReLU), 128 (the embedding;
linear unless ``final_relu``). One 128-d embedding per 0.96 s example.

Weights file (safetensors), keys named after the release's TF-Slim scopes::

    conv1.weight [64, 1, 3, 3]      conv1.bias [64]
    conv2.weight [128, 64, 3, 3]    conv2.bias [128]
    conv3_1.weight [256, 128, 3, 3] conv3_1.bias [256]     conv3_2.weight [256, 256, 3, 3] ...
    conv4_1.weight [512, 256, 3, 3] conv4_1.bias [512]     conv4_2.weight [512, 512, 3, 3] ...
    fc1_1.weight [4096, 12288]      fc1_1.bias [4096]      fc1_2.weight [4096, 4096] ...
    fc2.weight [128, 4096]          fc2.bias [128]
    pca.eigen_vectors [128, 128]    pca.means [128]         (optional: the release's PCA post-processing)

Convolution kernels are in PyTorch layout ``[out, in, kh, kw]`` (TF's ``[kh, kw, in, out]`` transposed with
``(3, 2, 0, 1)``), dense kernels ``[out, in]`` (TF's transposed). The kernel axes are (time, mel). Before
``fc1_1`` the feature map is flattened in TF's ``[time, mel, channels]`` order, so a TF kernel converts by a plain
transpose. With the ``pca.*`` keys, :meth:`VGGish.forward` can apply the release's whitening
``(x - means) @ eigen_vectors.T`` (without its 8-bit quantisation).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from musiclm.audio import resample
from musiclm.errors import MusicLMError
from musiclm.fileio import atomic_path
from musiclm.train.checkpoint import read_safetensors

SAMPLE_RATE = 16_000
WINDOW_SECONDS = 0.025
HOP_SECONDS = 0.010
EXAMPLE_SECONDS = 0.96
NUM_MELS = 64
MEL_MIN_HZ = 125.0
MEL_MAX_HZ = 7500.0
LOG_OFFSET = 0.01
EMBEDDING_SIZE = 128
CONV_LAYERS = (("conv1", 1, 64), ("conv2", 64, 128), ("conv3_1", 128, 256), ("conv3_2", 256, 256),
               ("conv4_1", 256, 512), ("conv4_2", 512, 512))
POOL_AFTER = ("conv1", "conv2", "conv3_2", "conv4_2")
FC_LAYERS = (("fc1_1", 6 * 4 * 512, 4096), ("fc1_2", 4096, 4096), ("fc2", 4096, EMBEDDING_SIZE))
PCA_KEYS = ("pca.eigen_vectors", "pca.means")


class VGGishWeightsError(MusicLMError):
    """A VGGish weights file is missing, unreadable or does not fit the architecture."""


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale."""
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


def mel_matrix(num_bins: int = 257, sample_rate: int = SAMPLE_RATE, num_mels: int = NUM_MELS,
               low_hz: float = MEL_MIN_HZ, high_hz: float = MEL_MAX_HZ) -> np.ndarray:
    """``[num_bins, num_mels]`` weights: triangles that are linear in mel, the DC bin left out."""
    if not 0.0 <= low_hz < high_hz <= sample_rate / 2:
        raise ValueError("need 0 <= low_hz < high_hz <= sample_rate / 2")
    bins_mel = hz_to_mel(np.linspace(0.0, sample_rate / 2, num_bins))
    edges = np.linspace(hz_to_mel(low_hz), hz_to_mel(high_hz), num_mels + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins_mel[:, None] - lower) / (center - lower)
    falling = (upper - bins_mel[:, None]) / (upper - center)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0
    return weights


class VGGishFrontEnd(nn.Module):
    """16 kHz audio ``[samples]`` -> log-mel examples ``[examples, 1, 96, 64]``."""

    def __init__(self) -> None:
        super().__init__()
        self.window_length = int(round(WINDOW_SECONDS * SAMPLE_RATE))  # 400
        self.hop_length = int(round(HOP_SECONDS * SAMPLE_RATE))  # 160
        self.n_fft = 2 ** int(np.ceil(np.log2(self.window_length)))  # 512
        self.example_frames = int(round(EXAMPLE_SECONDS / HOP_SECONDS))  # 96
        window = torch.hann_window(self.window_length, periodic=True, dtype=torch.float64)
        self.register_buffer("window", window.float(), persistent=False)
        basis = torch.from_numpy(mel_matrix(self.n_fft // 2 + 1)).float()
        self.register_buffer("mel_basis", basis, persistent=False)

    @property
    def min_samples(self) -> int:
        """Samples of one complete example (15 600 at 16 kHz)."""
        return (self.example_frames - 1) * self.hop_length + self.window_length

    def log_mel(self, wav: torch.Tensor) -> torch.Tensor:
        """``[samples]`` at 16 kHz -> ``[frames, 64]`` log-mel (frames = 1 + (samples - 400) // 160)."""
        if wav.dim() != 1:
            raise ValueError(f"expected mono [samples], got shape {tuple(wav.shape)}")
        if wav.numel() < self.min_samples:
            wav = nn.functional.pad(wav, (0, self.min_samples - wav.numel()))
        frames = wav.float().unfold(0, self.window_length, self.hop_length) * self.window
        spectrum = torch.fft.rfft(frames, n=self.n_fft).abs()
        return torch.log(spectrum @ self.mel_basis + LOG_OFFSET)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        mel = self.log_mel(wav)
        count = mel.shape[0] // self.example_frames
        return mel[: count * self.example_frames].reshape(count, 1, self.example_frames, NUM_MELS)


@dataclass
class VGGishOptions:
    final_relu: bool = False  # the original release has a linear embedding layer; some ports add a ReLU
    postprocess: bool = False  # apply the PCA whitening (needs the pca.* tensors)


class VGGish(nn.Module):
    """The VGGish network: log-mel examples ``[N, 1, 96, 64]`` -> embeddings ``[N, 128]``.

    The weights start at zero (72M parameters: a random initialisation would cost seconds for nothing); fill them
    with :meth:`load_weights`, :func:`load_vggish` or :func:`random_vggish`.
    """

    def __init__(self, options: VGGishOptions | None = None):
        super().__init__()
        self.options = options or VGGishOptions()
        self.front_end = VGGishFrontEnd()
        self.convs = nn.ModuleDict({name: nn.utils.skip_init(nn.Conv2d, cin, cout, 3, padding=1)
                                    for name, cin, cout in CONV_LAYERS})
        self.fcs = nn.ModuleDict({name: nn.utils.skip_init(nn.Linear, cin, cout) for name, cin, cout in FC_LAYERS})
        with torch.no_grad():
            for param in self.parameters():
                param.zero_()
        self.register_buffer("pca_eigen_vectors", torch.eye(EMBEDDING_SIZE))
        self.register_buffer("pca_means", torch.zeros(EMBEDDING_SIZE))
        self.has_pca = False

    def forward(self, examples: torch.Tensor) -> torch.Tensor:
        x = examples
        for name, conv in self.convs.items():
            x = torch.relu(conv(x))
            if name in POOL_AFTER:
                x = nn.functional.max_pool2d(x, 2)
        x = x.permute(0, 2, 3, 1).flatten(1)  # TF order: [time, mel, channels]
        x = torch.relu(self.fcs["fc1_1"](x))
        x = torch.relu(self.fcs["fc1_2"](x))
        x = self.fcs["fc2"](x)
        if self.options.final_relu:
            x = torch.relu(x)
        if self.options.postprocess:
            if not self.has_pca:
                raise VGGishWeightsError("postprocess=True needs the pca.eigen_vectors and pca.means tensors")
            x = (x - self.pca_means) @ self.pca_eigen_vectors.t()
        return x

    @torch.no_grad()
    def embed(self, wav: np.ndarray | torch.Tensor, sample_rate: int, batch: int = 64) -> torch.Tensor:
        """One mono signal at any rate -> per-example embeddings ``[examples, 128]`` (one per 0.96 s)."""
        array = wav.detach().cpu().numpy() if isinstance(wav, torch.Tensor) else np.asarray(wav)
        array = np.asarray(array, dtype=np.float32)
        if array.ndim != 1 or array.size == 0:
            raise ValueError(f"expected non-empty mono audio [samples], got shape {array.shape}")
        if sample_rate != SAMPLE_RATE:
            array = resample(array, sample_rate, SAMPLE_RATE)
        device = self.pca_means.device
        examples = self.front_end(torch.from_numpy(np.ascontiguousarray(array)).to(device))
        return torch.cat([self(examples[i : i + batch]) for i in range(0, examples.shape[0], batch)]).cpu()

    # -------------------------------------------------------------------------------------------- weights
    def weights(self) -> dict[str, torch.Tensor]:
        """The tensors of the documented weights file (``pca.*`` only when present)."""
        out: dict[str, torch.Tensor] = {}
        for group in (self.convs, self.fcs):
            for name, layer in group.items():
                out[f"{name}.weight"] = layer.weight.detach().cpu().contiguous()
                out[f"{name}.bias"] = layer.bias.detach().cpu().contiguous()
        if self.has_pca:
            out["pca.eigen_vectors"] = self.pca_eigen_vectors.detach().cpu().contiguous()
            out["pca.means"] = self.pca_means.detach().cpu().contiguous()
        return out

    def load_weights(self, tensors: dict[str, torch.Tensor], source: str = "weights") -> None:
        """Copy documented-name tensors in, checking every key and shape (errors list the offenders)."""
        expected = {k: v.shape for k, v in self.weights().items() if not k.startswith("pca.")}
        pca = [k for k in PCA_KEYS if k in tensors]
        if len(pca) == 1:
            raise VGGishWeightsError(f"{source}: has {pca[0]} but not its partner; PCA needs both {PCA_KEYS}")
        if pca:
            expected.update({"pca.eigen_vectors": (EMBEDDING_SIZE, EMBEDDING_SIZE), "pca.means": (EMBEDDING_SIZE,)})
        missing = sorted(set(expected) - set(tensors))
        unexpected = sorted(set(tensors) - set(expected))
        wrong = sorted(f"{k} {tuple(tensors[k].shape)} (expected {tuple(expected[k])})"
                       for k in expected if k in tensors and tuple(tensors[k].shape) != tuple(expected[k]))
        if missing or unexpected or wrong:
            parts = []
            if missing:
                parts.append(f"missing keys {missing[:6]}")
            if unexpected:
                parts.append(f"unexpected keys {unexpected[:6]}")
            if wrong:
                parts.append(f"wrong shapes {wrong[:4]}")
            raise VGGishWeightsError(f"{source}: does not fit VGGish ({'; '.join(parts)}); see the key naming in "
                                     "musiclm/eval/vggish.py")
        with torch.no_grad():
            for group in (self.convs, self.fcs):
                for name, layer in group.items():
                    layer.weight.copy_(tensors[f"{name}.weight"].float())
                    layer.bias.copy_(tensors[f"{name}.bias"].float())
            if pca:
                self.pca_eigen_vectors.copy_(tensors["pca.eigen_vectors"].float())
                self.pca_means.copy_(tensors["pca.means"].float())
        self.has_pca = bool(pca)


def random_vggish(seed: int = 0, options: VGGishOptions | None = None) -> VGGish:
    """VGGish with random (He-initialised) weights from ``torch.Generator(seed)``: for tests, not for metrics."""
    model = VGGish(options)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for group in (model.convs, model.fcs):
            for layer in group.values():
                fan_in = layer.weight[0].numel()
                layer.weight.normal_(0.0, float(np.sqrt(2.0 / fan_in)), generator=generator)
                layer.bias.zero_()
    return model.eval()


def save_vggish(model: VGGish, path: str | os.PathLike[str]) -> Path:
    """Write the weights under the documented names (safetensors, atomically)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(model.weights(), str(tmp), metadata={"format": "musiclm-vggish"})
    return path


def load_vggish(path: str | os.PathLike[str], options: VGGishOptions | None = None,
                device: str | torch.device = "cpu") -> VGGish:
    """VGGish with the weights of a safetensors file (key naming in the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise VGGishWeightsError(f"{path}: no such VGGish weights file (convert the AudioSet release to the "
                                 "safetensors layout documented in musiclm/eval/vggish.py)")
    tensors = read_safetensors(path, VGGishWeightsError)
    model = VGGish(options)
    model.load_weights(tensors, str(path))
    return model.to(device).eval()
