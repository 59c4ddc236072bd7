"""Prompt learning (CoOp) through a tiny random CLIP saved and loaded like a real one."""

import copy

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoTokenizer, CLIPModel
from vidprobe.features.backbones import save_tiny_clip
from vidprobe.heads.config import HeadConfig
from vidprobe.heads.coop import CoOp
from vidprobe.heads.trainer import fit

NAMES = ["dog", "cat", "bird", "fish"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = save_tiny_clip(tmp_path_factory.mktemp("clip"), seed=1)
    return CLIPModel.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


def test_initial_context_is_clips_own_prompt(clip):
    model, tok = clip
    head = CoOp(model, tok, NAMES + ["up and away"], init="a video of a")
    with torch.no_grad():
        ref = model.get_text_features(
            **tok([f"a video of a {n}." for n in NAMES + ["up and away"]], padding=True, return_tensors="pt")
        ).pooler_output
        torch.testing.assert_close(head.class_embeddings(), ref, rtol=1e-5, atol=1e-6)
    assert list(head.state_dict()) == ["ctx"]  # CLIP stays out of the saved weights


@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_learned_context_beats_zero_shot_and_is_all_that_changes(clip, pooling):
    model, tok = clip
    torch.manual_seed(0)
    head = CoOp(model, tok, NAMES, pooling=pooling)
    centres = torch.randn(4, 16, generator=torch.Generator().manual_seed(0))

    def frames(n, seed):  # (n, 4 frames, 16): a cluster per class in CLIP's joint space
        g = torch.Generator().manual_seed(seed)
        y = torch.randint(0, 4, (n,), generator=g)
        return F.normalize(centres[y][:, None] + 0.5 * torch.randn(n, 4, 16, generator=g), dim=-1), y

    train, val = frames(200, 1), frames(100, 2)
    with torch.no_grad():
        zero_shot = (head(val[0]).argmax(1) == val[1]).float().mean().item()
    clip_before = copy.deepcopy(model.state_dict())
    head_before = copy.deepcopy(head.state_dict())
    fitted = fit(
        head, train, val, F.cross_entropy, HeadConfig(name="coop", lr=0.01, epochs=40, batch_size=64, patience=40)
    )
    with torch.no_grad():
        learned = (fitted.model(val[0]).argmax(1) == val[1]).float().mean().item()
    assert learned > zero_shot + 0.3, (zero_shot, learned)
    assert all(torch.equal(clip_before[k], v) for k, v in model.state_dict().items())  # the text tower is frozen
    assert not torch.equal(head_before["ctx"], head.state_dict()["ctx"])
