"""`vidprobe caption` with a tiny random Florence-2 saved and loaded by path: captions equal a direct
`generate`, one record per video row (per window in windows mode), embedded by `vidprobe text` and fused."""

import json

import numpy as np
import pytest
import torch
import transformers
from decord import VideoReader
from PIL import Image

from features.captions import Captioner, save_tiny_florence2
from features.store import FeatureSet
from heads.runs import load_run
from pipeline import caption, embed, index, layout, text, train
from pipeline.cli import main

pytestmark = pytest.mark.slow  # generation over every demo clip


@pytest.fixture(scope="module")
def florence(tmp_path_factory):
    return save_tiny_florence2(tmp_path_factory.mktemp("florence") / "tiny-florence", seed=1)


def test_a_caption_equals_a_direct_generate(florence, demo_root):
    frame = VideoReader(str(next(iter(sorted(demo_root.rglob("*.mp4")))))).get_batch([3]).asnumpy()[0]
    ours = Captioner(str(florence), max_new_tokens=6, min_new_tokens=3).caption([frame, frame])
    processor = transformers.AutoProcessor.from_pretrained(florence)
    net = transformers.Florence2ForConditionalGeneration.from_pretrained(florence).eval()
    inputs = processor(text=["<CAPTION>"], images=[Image.fromarray(frame)], return_tensors="pt")
    with torch.no_grad():
        ids = net.generate(**inputs, max_new_tokens=6, min_new_tokens=3, num_beams=1, do_sample=False)
    direct = processor.post_process_generation(processor.batch_decode(ids, skip_special_tokens=True)[0],
                                               task="<CAPTION>", image_size=frame.shape[:2])["<CAPTION>"] \
        if processor.post_processor_config else processor.batch_decode(ids, skip_special_tokens=True)[0].strip()
    assert ours == [direct, direct] and direct


def test_captions_reach_a_fused_head(florence, demo_cfg):
    cfg = demo_cfg(f"caption.model={florence}", "caption.max_new_tokens=6", "caption.min_new_tokens=3",
                   "caption.frames=2", "text.source=captions", "text.encoder=minilm", "task.traits=[]",
                   "head.fuse=[florence2-tiny-florence-minilm:text/pooled]", "run.name=fused")
    index.run(cfg)
    embed.run(cfg)
    out = caption.run(cfg)
    records = [json.loads(line) for line in layout.captions(cfg).read_text().splitlines()]
    video = FeatureSet(layout.feature_set(cfg))
    assert out["records"] == len(records) == len(video.ids) and sorted(r["id"] for r in records) == sorted(video.ids)
    assert all(len(r["captions"]) == 2 and r["text"] for r in records)
    emb = text.run(cfg)
    fs = FeatureSet(emb["dir"])
    assert fs.dir.name == "florence2-tiny-florence-minilm" and emb["present"] == len(video.ids)
    assert np.allclose(np.linalg.norm(fs.get("text/pooled", fs.ids), axis=1), 1.0, atol=1e-5)
    train.run(cfg)
    run = load_run(layout.run_dir(cfg))
    assert "florence2-tiny-florence-minilm:text/pooled" in run.inputs and len(run.dims) == 2  # video and captions


def test_windows_mode_captions_every_window_row(florence, demo_cfg):
    cfg = demo_cfg(f"caption.model={florence}", "caption.max_new_tokens=4", "sampling.mode=windows",
                   "sampling.window=0.5", "sampling.stride=0.5", "embed.feature_set=win", "task.traits=[]")
    index.run(cfg)
    embed.run(cfg)
    caption.run(cfg)
    ids = [json.loads(line)["id"] for line in layout.captions(cfg).read_text().splitlines()]
    assert sorted(ids) == sorted(FeatureSet(layout.feature_set(cfg)).ids) and all("#w" in i for i in ids)


def test_a_missing_captioning_model_is_a_usage_error(demo_root, tmp_path, capsys):
    base = [f"dataset.root={demo_root}", f"paths.cache={tmp_path}", "dataset.name=demo", "index.num_workers=1"]
    assert main(["caption", *base]) == 2
    assert "caption.model: needs a Florence-2 hub id or local path" in capsys.readouterr().err
    assert main(["caption", *base, f"caption.model={tmp_path / 'nowhere'}"]) == 2
    assert "could not load Florence-2" in capsys.readouterr().err
