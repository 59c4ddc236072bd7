"""One error contract: every bad setting the README or a key's comment says is refused ends in exit 2 with a
message naming the key and the fix, never a traceback, and nothing is decoded or trained first. Most are found
when the config loads; the rest when a model or a file they name is opened, before any work."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from vidprobe.cli import main
from vidprobe.stages import embed, index, train


@pytest.fixture(scope="module")
def prepared(demo_root, tmp_path_factory):
    """The small demo indexed and embedded with the tiny VideoMAE: the settings below that need data have it."""
    cache = tmp_path_factory.mktemp("bad") / "cache"
    base = [
        f"dataset.root={demo_root}",
        f"paths.cache={cache}",
        "dataset.name=demo",
        "index.num_workers=1",
        "embed.num_workers=0",
        "backbone.name=videomae-tiny-random",
        "task.traits=[]",
    ]
    from vidprobe.config import load_config

    cfg = load_config(None, base)
    index.run(cfg)
    embed.run(cfg)
    tokens = [
        "backbone.token_grid=[2, 2, 2]",
        "embed.feature_set=tok",
        "head.name=attentive",
        "head.features=video/tokens",
        "run.name=att",
        "head.epochs=2",
    ]
    embed.run(load_config(None, base + tokens))
    train.run(load_config(None, base + tokens))
    return base, demo_root


def not_whisper(folder):
    """A CTranslate2 model folder holding another model than Whisper, written by CTranslate2's own serializer."""
    from ctranslate2.specs import common_spec, model_spec

    class TinySpec(model_spec.ModelSpec):
        def __init__(self):
            super().__init__()
            self.a = common_spec.LinearSpec()

        @property
        def name(self):
            return "TinySpec"

    spec = TinySpec()
    spec.a.weight, spec.a.bias = np.ones((2, 2), np.float32), np.zeros(2, np.float32)
    spec.validate()
    folder.mkdir(parents=True, exist_ok=True)
    spec.save(str(folder))
    return folder


BAD = {  # name: (command and settings, what the message must say); {tmp} is a folder of this test's own
    "unknown backbone": (["embed", "backbone.name=videomae-tiny"], "unknown backbone 'videomae-tiny'"),
    "unknown head": (["train", "head.name=linaer"], "head.name: unknown head 'linaer'"),
    "unknown class loss": (["train", "head.loss=focall"], "head.loss: unknown class loss 'focall'; valid: ce, focal"),
    "unknown regression loss": (["train", "head.regression_loss=rmse"], "unknown regression loss 'rmse'"),
    "unknown adapter": (["index", "dataset.adapter=folders"], "dataset.adapter: unknown adapter 'folders'"),
    "unknown text encoder": (["text", "text.encoder=bert"], "text.encoder: unknown text encoder 'bert'"),
    "unknown key": (["train", "head.lrr=0.1"], "did you mean head.lr?"),
    "wrong type": (["train", "head.epochs=many"], "head.epochs: expected int"),
    "not a choice": (["embed", "sampling.decoder=opencv"], "sampling.decoder: 'opencv' is not one of"),
    "unknown config name": (["index", "-c", "ucf110"], "closest built-in configs: ucf101"),
    "monitor the task lacks": (["train", "head.monitor=mAP"], "head.monitor: 'mAP' is not measured for task.label"),
    "sweep metric the task lacks": (
        ["sweep", "sweep.grid={head.lr: [0.1]}", "sweep.metric=spearman/mean"],
        "sweep.metric: 'spearman/mean' is not measured",
    ),
    "a bad sweep grid point": (["sweep", "sweep.grid={head.loss: [ce, nope]}"], "sweep.grid point 2: head.loss"),
    "an empty sweep grid": (["sweep"], "sweep.grid: nothing to sweep"),
    "prompt head on traits": (
        ["train", "head.name=zero-shot", "task.traits=[speed]"],
        "head.name=zero-shot classifies task.label",
    ),
    "fine-tune blocks": (["finetune", "finetune.unfreeze_blocks=-3"], "finetune.unfreeze_blocks: -3"),
    "fine-tune crop scale": (["finetune", "finetune.augment_crop_scale=[0.5]"], "finetune.augment_crop_scale"),
    "beam size": (["transcribe", "transcribe.beam_size=0"], "transcribe.beam_size: must be >= 1"),
    "transcription batch": (["transcribe", "transcribe.batch_size=0"], "transcribe.batch_size: must be >= 1"),
    "pack gap": (["transcribe", "transcribe.pack_gap=-1"], "transcribe.pack_gap: must be >= 0"),
    "subtitle format": (["transcribe", "transcribe.subtitles=[ass]"], "transcribe.subtitles: ['ass'] unknown"),
    "not-Whisper CTranslate2 folder, openai-whisper": (
        ["transcribe", "transcribe.backend=openai-whisper", "transcribe.model={tmp}/ct2"],
        "not Whisper",
    ),
    "not-Whisper CTranslate2 folder, faster-whisper": (
        ["transcribe", "transcribe.backend=faster-whisper", "transcribe.model={tmp}/ct2"],
        "transcribe.model",
    ),
    "missing Whisper model": (
        ["transcribe", "transcribe.backend=openai-whisper", "transcribe.model={tmp}/nope"],
        "neither a file, a CTranslate2 folder nor an openai-whisper model name",
    ),
    "a Whisper checkpoint file for faster-whisper": (
        ["transcribe", "transcribe.backend=faster-whisper", "transcribe.model={tmp}/file.pt"],
        "faster-whisper needs a CTranslate2 folder",
    ),
    "a transformers family without a model": (["embed", "backbone.name=videomae"], "backbone.model: videomae needs"),
    "a model folder that is not there": (
        ["embed", "backbone.name=videomae", "backbone.model={tmp}/nope"],
        "Pass a local directory",
    ),
    "not I3D weights": (
        ["embed", "backbone.name=i3d-kinetics400", "backbone.model={tmp}/weights.pkl"],
        "is not DeepMind's Kinetics-400 I3D",
    ),
    "layers out of range": (["embed", "backbone.layers=[9]"], "backbone.layers: [9] out of range"),
    "layers of a model without them": (
        ["embed", "backbone.name=i3d-kinetics400", "backbone.layers=[-1]"],
        "no intermediate layers",
    ),
    "in_workers without workers": (["embed", "embed.in_workers=true", "embed.num_workers=0"], "embed.in_workers=true"),
    "features a set lacks": (["train", "head.features=video/nope"], "video/nope"),
    "predict without input": (["predict"], "predict.input: name the new videos"),
    "export keys a set lacks": (["export", "export.keys=[audio/pooled]"], "export.keys"),
    "caption without a model": (["caption"], "caption.model: needs a Florence-2"),
    "audio encoder without a model": (["audio-embed"], "audio_embed.model"),
    "init on a missing folder": (["init", "{tmp}/proj", "--root", "{tmp}/nope"], "no such folder"),
    "a token grid finer than the model's": (
        ["embed", "backbone.token_grid=[9, 9, 9]", "embed.feature_set=fine"],
        "backbone.token_grid: [9, 9, 9] is finer than",
    ),
    "an attentive head on pooled features": (
        ["train", "head.name=attentive"],
        "head.features: the attentive head attends over token grids",
    ),
    "attentive queries": (["train", "head.name=attentive", "head.queries=0"], "queries and heads must be >= 1"),
    "tokens of another grid at predict": (
        [
            "predict",
            "backbone.token_grid=[1, 2, 2]",
            "embed.feature_set=tok",
            "head.name=attentive",
            "head.features=video/tokens",
            "run.name=att",
            "predict.input={demo}/test",
        ],
        "backbone.token_grid: [2, 2, 2]",
    ),
}


@pytest.mark.parametrize("name", list(BAD))
def test_each_bad_setting_is_exit_2_with_the_fix_and_no_traceback(name, prepared, tmp_path, capsys):
    base, demo_root = prepared
    not_whisper(tmp_path / "ct2")
    (tmp_path / "file.pt").write_bytes(b"not a checkpoint")
    (tmp_path / "weights.pkl").write_bytes(pickle.dumps({"params": {"nothing": np.zeros(2)}}))
    args, says = BAD[name]
    args = [a.replace("{tmp}", str(tmp_path)).replace("{demo}", str(demo_root)) for a in args]
    command, rest = args[0], args[1:]
    if command != "init":
        rest = [*base, *rest]
    code = main([command, *rest])
    err = capsys.readouterr().err
    assert code == 2, f"{name}: exit {code}\n{err[-3000:]}"
    assert "Traceback" not in err and says in err, f"{name}:\n{err[-3000:]}"
