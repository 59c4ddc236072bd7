"""Class prompts through CLIP's text tower into the feature store, then zero-shot heads on CLIP frames."""

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoTokenizer, CLIPModel
from vidprobe import layout
from vidprobe.features.backbones import save_tiny_clip
from vidprobe.features.errors import FeatureConfigError
from vidprobe.features.store import FeatureSet
from vidprobe.features.text import readable
from vidprobe.heads.runs import load_run
from vidprobe.stages import embed, index, text, train


def test_readable_class_names():
    assert readable("ApplyEyeMakeup") == "apply eye makeup"
    assert readable("brush_hair") == "brush hair"
    assert readable("left") == "left"


def test_prompts_equal_a_direct_text_forward_and_feed_zero_shot(demo_cfg, tmp_path):
    clip_dir = save_tiny_clip(tmp_path / "clip", seed=4)
    templates = ["a video of {label}.", "something moving {label}."]
    cfg = demo_cfg(
        "backbone.name=clip",
        f"backbone.model={clip_dir}",
        "embed.feature_set=clip",
        "sampling.num_frames=4",
        f"text.templates={templates}",
        "task.traits=[]",
        "head.name=zero-shot",
        "head.prompts=clip-prompts",
    )
    index.run(cfg)
    embed.run(cfg)
    out = text.run(cfg)
    assert out["classes"] == ["down", "left", "right", "up"]
    fs = FeatureSet(out["dir"])
    assert fs.dir.name == "clip-prompts" and "a video of" in fs.attrs["config"]
    model, tok = CLIPModel.from_pretrained(clip_dir).eval(), AutoTokenizer.from_pretrained(clip_dir)
    with torch.no_grad():
        emb = model.get_text_features(
            **tok([t.format(label="left") for t in templates], padding=True, return_tensors="pt")
        ).pooler_output
    expected = torch.nn.functional.normalize(emb, dim=-1).mean(0).numpy()
    assert np.abs(fs.get("text/pooled", ["left"])[0] - expected).max() <= 1e-5
    assert text.run(cfg)["classes"] == out["classes"]  # a second run finds them stored
    metrics = train.run(cfg)  # random weights: any accuracy, but the whole path runs
    assert 0.0 <= metrics["acc"] <= 1.0
    assert load_run(layout.run_dir(cfg)).feat_l2


def test_prompts_need_a_clip_model_and_a_label_slot(demo_cfg):
    cfg = demo_cfg()
    index.run(cfg)
    with pytest.raises(FeatureConfigError, match="text.model: the CLIP text encoder needs a CLIP model"):
        text.run(cfg)
    with pytest.raises(FeatureConfigError, match="needs a \\{label\\} slot"):
        text.run(demo_cfg("backbone.name=clip-tiny-random", "text.templates=['a video']"))


def test_prompts_through_minilm(demo_cfg):
    cfg = demo_cfg("text.encoder=minilm", "text.feature_set=minilm-prompts")
    index.run(cfg)
    fs = FeatureSet(text.run(cfg)["dir"])
    assert fs.ids == ["down", "left", "right", "up"] and fs.keys["text/pooled"] == (384,)
    v = fs.get("text/pooled", ["left", "right"])
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5) and not np.allclose(v[0], v[1])


def test_class_prompt_similarity_report(demo_cfg):
    cfg = demo_cfg("text.encoder=minilm", "text.feature_set=minilm-prompts", "text.similarity_threshold=-1")
    index.run(cfg)
    report = text.run(cfg)["dir"] / "report"
    pairs = pd.read_csv(report / "similar_pairs.csv")
    assert len(pairs) == 6 and pairs.cosine.is_monotonic_decreasing  # every pair of 4 classes, most alike first
    assert set(pairs.count_a) == {3}  # train clips per class in the small demo
    sim = pd.read_csv(report / "similarity.csv", index_col=0)
    assert np.allclose(np.diag(sim), 1, atol=1e-3) and np.allclose(sim, sim.T, atol=1e-4)
    row = pairs.iloc[0]
    assert row.cosine == pytest.approx(sim.loc[row.class_a, row.class_b], abs=1e-4)
    assert (report / "similarity.svg").read_text().startswith("<svg") and "| class a |" in (
        report / "similar_pairs.md"
    ).read_text()
    strict = demo_cfg("text.encoder=minilm", "text.feature_set=minilm-prompts", "text.similarity_threshold=0.99")
    assert len(pd.read_csv(text.run(strict)["dir"] / "report" / "similar_pairs.csv")) == 0


def test_coop_head_on_cached_clip_frames(demo_cfg):
    cfg = demo_cfg(
        "backbone.name=clip-tiny-random",
        "sampling.num_frames=4",
        "embed.feature_set=clip",
        "task.traits=[]",
        "head.name=coop",
        "head.features=frames",
        "head.epochs=3",
    )
    index.run(cfg)
    embed.run(cfg)
    metrics = train.run(cfg)
    assert 0 <= metrics["acc"] <= 1
    bundle = load_run(layout.run_dir(cfg))
    assert set(bundle.label_head) == {"ctx"} and bundle.feat_l2
    from vidprobe.stages import evaluate

    assert set(evaluate.run(cfg)) >= {"acc", "macro_f1"}
