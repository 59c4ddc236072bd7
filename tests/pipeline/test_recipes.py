"""Each research recipe under configs/experiments/ runs end to end on the small demo (tiny backbones,
few epochs and seeds), through the same stages its documented commands call."""

from pathlib import Path

import pandas as pd
import pytest
from vidprobe.config import load_config
from vidprobe.stages import audio, embed, finetune, index, sweep, text, train, transcribe

ROOT = Path(__file__).resolve().parents[2]


def recipe(name: str, demo_root, cache, *overrides: str):
    return load_config(
        ROOT / "configs" / "experiments" / f"{name}.yaml",
        [
            f"dataset.root={demo_root}",
            f"paths.cache={cache}",
            "embed.num_workers=0",
            "index.num_workers=2",
            "sweep.seeds=[0]",
            "head.epochs=15",
            *overrides,
        ],
    )


TINY = [
    "backbone.name=videomae-tiny-random",
    "sampling.num_frames=null",
    "sampling.size=null",
    "embed.feature_set=tiny",
]


@pytest.mark.slow
def test_trait_experts_over_video_audio_text_and_fused(demo_root, tmp_path):
    cfg = recipe("trait-experts", demo_root, tmp_path, *TINY)
    for stage in (index, embed, audio, transcribe, text):
        stage.run(cfg)
    table = sweep.run(cfg).set_index("config")
    assert {f"modality={m}" for m in ("video", "audio", "text", "fused")} <= set(table.index)
    assert {"spearman/speed mean", "spearman/brightness mean"} <= set(table.columns)


@pytest.mark.slow
def test_batch_size_and_learning_rate_study(demo_root, tmp_path):
    cfg = recipe("batch-lr-study", demo_root, tmp_path, *TINY)
    index.run(cfg)
    embed.run(cfg)
    table = sweep.run(cfg)
    runs = table[table.config == "batch_size=8"].runs.iloc[0]
    saved = load_config(Path(runs) / "config.yaml")
    assert saved.head.lr == pytest.approx(0.01 * (8 / 128) ** 0.5)  # sqrt rule from base_batch_size 128


@pytest.mark.slow
def test_prompt_learning_beside_zero_shot_and_a_linear_probe(demo_root, tmp_path):
    cfg = recipe("prompt-learning", demo_root, tmp_path, "head.epochs=5")
    for stage in (index, embed, text):
        stage.run(cfg)
    table = sweep.run(cfg)
    for name in ("zero-shot", "linear-probe", "coop-mean", "coop-attention"):
        assert {f"head={name},k_train={k}" for k in (1, 2, 4, 8, None)} <= set(table.config)


@pytest.mark.slow
def test_staged_training_then_fine_tuning_from_the_head(demo_root, tmp_path):
    cfg = recipe(
        "staged", demo_root, tmp_path, *TINY, "finetune.epochs=1", "finetune.num_workers=0", "finetune.export=false"
    )
    index.run(cfg)
    embed.run(cfg)
    head = train.run(cfg)
    result = finetune.run(cfg)
    history = pd.read_csv(result["dir"] / "history.tsv", sep="\t")
    assert history.acc.iloc[0] == pytest.approx(head["acc"])  # stage B starts where stage A ended
