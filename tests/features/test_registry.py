"""A new backbone family is one new module: dropped into features/backbones/ of a copy of the package, with no
other file edited, it is usable by name and by `backbone.name=auto`, built tiny by `save_tiny`, measured by the
backbone benchmark, listed by `vidprobe backbones`, and part of the code `vidprobe stamp` fingerprints for embed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

BEIT = '''"""BEiT: an image transformer on every frame (a family added in one module)."""

from pathlib import Path

from vidprobe.features.backbones.base import Native, register_backbone, require_model
from vidprobe.features.backbones.frames import PoolerFrames, load_frames, pooler_output_mean
from vidprobe.features.backbones.tiny import SIZE, VIT, save_tiny_model
from vidprobe.features.video import IMAGENET_MEAN, IMAGENET_STD


def save_tiny_beit(directory: Path, seed: int = 0) -> Path:
    from transformers import BeitConfig, BeitModel

    return save_tiny_model(lambda: BeitModel(BeitConfig(image_size=SIZE, patch_size=16, use_mean_pooling=True, **VIT)),
                           directory, seed, "BeitImageProcessor", IMAGENET_MEAN, IMAGENET_STD)


@register_backbone("beit", example="`microsoft/beit-base-patch16-224-pt22k`", input="any T (8) x `image_size`",
                   pooling="per frame: mean of the patch tokens (`pooler_output`); mean over frames",
                   keys="`frames`, `video/pooled`", model_types=("beit",), tiny=save_tiny_beit,
                   native=Native("BeitModel", "BeitConfig", 8, 224), reference=pooler_output_mean)
def beit(cfg):
    from transformers import BeitModel

    return load_frames(PoolerFrames, BeitModel, require_model(cfg, "microsoft/beit-base-patch16-224-pt22k"), "beit",
                       "BEiT", IMAGENET_MEAN, IMAGENET_STD, "mean over frames of the per-frame pooler_output")
'''

CHECK = """
import json, sys, tempfile
from pathlib import Path

import torch

import vidprobe
from vidprobe.code import command_closure
from vidprobe.features.backbones import BACKBONES, build_backbone, markdown_table, save_tiny, tiny_families
from vidprobe.features.config import BackboneConfig

assert vidprobe.__file__.startswith(sys.argv[1]), vidprobe.__file__  # the copy, not the checkout
with tempfile.TemporaryDirectory() as tmp:
    model = save_tiny("beit", Path(tmp) / "beit")
    by_name = build_backbone(BackboneConfig(name="beit", model=str(model)))
    by_auto = build_backbone(BackboneConfig(name="auto", model=str(model)))
    x = torch.rand(1, 4, 3, by_name.image_size, by_name.image_size)
    pooled = by_name(x)["video/pooled"]
    net = __import__("transformers").BeitModel.from_pretrained(model).eval()
    with torch.no_grad():
        reference = BACKBONES["beit"].reference(net, x)
print(json.dumps({"auto": by_auto.name, "tiny": "beit" in tiny_families(), "table": "| `beit` |" in markdown_table(),
                  "equal": float((pooled - reference).abs().max()) <= 1e-5, "keys": sorted(by_name(x)),
                  "fingerprinted": "vidprobe.features.backbones.beit" in command_closure("embed")}))
"""


def test_a_new_family_is_one_new_module(tmp_path):
    site = tmp_path / "site"
    places = {
        "pipeline": site / "vidprobe",
        "features": site / "vidprobe" / "features",
        "heads": site / "vidprobe" / "heads",
        "configs": site / "vidprobe" / "configs",
    }
    for folder, place in places.items():
        shutil.copytree(ROOT / folder, place, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
    (site / "vidprobe" / "features" / "backbones" / "beit.py").write_text(BEIT)  # the one new file
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1"}

    def run(*cmd: str) -> str:
        done = subprocess.run([sys.executable, *cmd], env=env, capture_output=True, text=True, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    found = json.loads(run("-c", CHECK, str(site)).strip().splitlines()[-1])
    assert found == {
        "auto": "beit",
        "tiny": True,
        "table": True,
        "equal": True,
        "keys": ["frames", "video/pooled"],
        "fingerprinted": True,
    }
    assert "| `beit` |" in run("-m", "vidprobe", "backbones")
    bench = run(str(ROOT / "benchmarks" / "backbones.py"), "--tiny", "--seconds", "0", "--families", "beit")
    figures = json.loads(bench.strip().splitlines()[-1])["families"]
    assert (
        figures["beit"]["clips_per_s"] > 0 and figures["beit"]["example"] == "`microsoft/beit-base-patch16-224-pt22k`"
    )
