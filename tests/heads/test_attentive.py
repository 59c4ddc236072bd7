"""The attentive probe (V-JEPA's attentive classifier) against a from-scratch reference of its equations, and
through every target kind, batched sweeps and streamed features."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from vidprobe.heads.config import HeadConfig, TaskConfig
from vidprobe.heads.data import LabeledFeatures
from vidprobe.heads.errors import HeadConfigError
from vidprobe.heads.models import AttentiveProbe, attention_heads
from vidprobe.heads.tasks import batch_key, train_heads


def reference(net: AttentiveProbe, x: torch.Tensor) -> torch.Tensor:
    """The probe's equations written out on its weights, in float64: per head softmax(q k^T / sqrt(d_h)) v."""
    p = {k: v.detach().double() for k, v in net.state_dict().items()}
    x = x.double()
    n, length, d = x.shape
    h, queries = net.heads, p["query"].shape[1]
    dh = d // h

    def layer_norm(z, name):
        mean, var = z.mean(-1, keepdim=True), z.var(-1, unbiased=False, keepdim=True)
        return (z - mean) / torch.sqrt(var + 1e-5) * p[f"{name}.weight"] + p[f"{name}.bias"]

    def linear(z, name):
        return z @ p[f"{name}.weight"].T + p[f"{name}.bias"]

    q0 = p["query"].expand(n, -1, -1)
    q = linear(q0, "q")
    kv = linear(layer_norm(x, "norm1"), "kv")
    k, v = kv[..., :d], kv[..., d:]
    out = torch.zeros(n, queries, d, dtype=torch.float64)
    for head in range(h):
        s = slice(head * dh, (head + 1) * dh)
        weights = torch.softmax(q[..., s] @ k[..., s].transpose(1, 2) / math.sqrt(dh), dim=-1)
        out[..., s] = weights @ v[..., s]
    q1 = q0 + linear(out, "proj")
    hidden = linear(layer_norm(q1, "norm2"), "fc1")
    gelu = 0.5 * hidden * (1 + torch.erf(hidden / math.sqrt(2)))  # exact GELU, as V-JEPA's MLP
    q2 = q1 + linear(gelu, "fc2")
    return linear(q2.flatten(1), "linear")


@pytest.mark.parametrize(("queries", "heads"), [(1, 16), (3, 4), (2, 1)])
def test_the_probe_is_its_equations(queries, heads):
    torch.manual_seed(0)
    net = AttentiveProbe(64, 5, queries=queries, heads=heads).eval()
    with torch.no_grad():  # move every weight off its initial value, so no term can hide behind a zero
        for param in net.parameters():
            param.add_(torch.randn_like(param) * 0.3)
        x = torch.randn(4, 12, 64)
        expected = reference(net, x)
        single = net(x)  # float32, as trained
        double = net.double()(x.double())  # the same code on the same weights, in the reference's precision
    assert single.shape == (4, 5)
    assert (double - expected).abs().max().item() <= 1e-6
    assert ((single.double() - expected).abs() / expected.abs().clamp_min(1)).max().item() <= 1e-4  # float32 rounding


def test_initialised_as_v_jepa_and_heads_chosen_to_divide_the_width():
    torch.manual_seed(0)
    net = AttentiveProbe(256, 3)
    assert all(
        float(net.state_dict()[f"{name}.bias"].abs().max()) == 0 for name in ("q", "kv", "proj", "fc1", "linear")
    )
    assert 0.018 < float(net.q.weight.std()) < 0.022 and 0.018 < float(net.query.std()) < 0.03
    assert float(net.fc2.weight.std()) == pytest.approx(0.02 / math.sqrt(2), rel=0.1)
    assert (attention_heads(1024, None), attention_heads(64, None), attention_heads(24, None)) == (16, 16, 12)
    assert attention_heads(384, 6) == 6
    with pytest.raises(HeadConfigError, match=r"head.heads: 5 heads do not divide the token width 64"):
        attention_heads(64, 5)


def bumps(n: int, seed: int, tokens: int = 6, dim: int = 16) -> tuple[torch.Tensor, np.ndarray]:
    """Tokens whose class is which of them carries a bump; each token has a pattern of its own (its place)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, tokens, dim, generator=g) * 0.5
    x = x + torch.randn(tokens, dim, generator=torch.Generator().manual_seed(99))  # each place its own direction
    which = torch.randint(0, 3, (n,), generator=g)
    bump = 3.0 * torch.tensor([1.0, -1.0]).repeat(dim // 2)  # zero mean: a LayerNorm keeps it
    x[torch.arange(n), which] += bump
    return x, which.numpy()


def split(x, which, traits=None, multi=None):
    ids = [f"s{i}" for i in range(len(x))]
    labels = [f"c{w}" for w in which]
    return LabeledFeatures(ids, x, labels, multi, traits)


@pytest.mark.parametrize("kind", ["label", "multilabel", "traits"])
def test_each_target_kind_trains_an_attentive_head(kind):
    x, which = bumps(240, 0)
    xv, which_v = bumps(120, 1)
    head = HeadConfig(name="attentive", features="video/tokens", epochs=40, patience=40, batch_size=32, lr=3e-3)
    if kind == "label":
        task = TaskConfig(label="label")
        tr, va = split(x, which), split(xv, which_v)
    elif kind == "multilabel":
        task = TaskConfig(label=None, multilabel="labels")
        tr = split(x, which, multi=[[f"c{w}"] + (["odd"] if w % 2 else []) for w in which])
        va = split(xv, which_v, multi=[[f"c{w}"] + (["odd"] if w % 2 else []) for w in which_v])
    else:
        task = TaskConfig(label=None, traits=["where"])
        tr, va = (
            split(x, which, traits=which[:, None].astype(float)),
            split(xv, which_v, which_v[:, None].astype(float)),
        )
    (trained,) = train_heads([head], task, tr, va)
    pred, metrics, _ = trained.bundle.predict(va, head)
    assert trained.bundle.tokens == 6 and len(pred) == 120
    score = {"label": "acc", "multilabel": "mAP", "traits": "spearman/where"}[kind]
    assert metrics[score] > 0.9, metrics
    with pytest.raises(HeadConfigError, match="trained on 6"):  # tokens of another grid
        trained.bundle.predict(split(xv[:, :4], which_v), head)


def test_attentive_heads_batch_in_a_sweep_each_as_it_trains_alone():
    x, which = bumps(120, 0)
    xv, which_v = bumps(60, 1)
    task = TaskConfig(label="label")
    heads = [HeadConfig(name="attentive", epochs=8, patience=8, batch_size=32, lr=lr, seed=3) for lr in (1e-3, 1e-2)]
    heads.append(HeadConfig(name="attentive", epochs=8, patience=8, batch_size=32, lr=1e-3, seed=3, queries=2))
    assert len({batch_key(h, task) for h in heads}) == 1  # one pass over the tokens for all three
    assert batch_key(HeadConfig(name="linear"), task) != batch_key(heads[0], task)  # inputs of another shape
    together = train_heads(heads, task, split(x, which), split(xv, which_v))
    for head, batched in zip(heads, together):
        (alone,) = train_heads([head], task, split(x, which), split(xv, which_v))
        for key, value in alone.bundle.label_head.items():
            torch.testing.assert_close(batched.bundle.label_head[key], value, atol=1e-6, rtol=0)


def test_tokens_bigger_than_memory_stream_from_disk_to_the_same_head(tmp_path):
    import pandas as pd
    from vidprobe.heads.data import load_split
    from vidprobe.heads.stream import DiskRows

    from tests.heads.test_stream import IDS, feature_set

    x, which = bumps(300, 0)
    fs = feature_set(tmp_path, x.numpy().astype(np.float16), "video/tokens")  # float16, as token grids are stored
    manifest = pd.DataFrame(
        {"sample_id": IDS, "split": ["train"] * 200 + ["val"] * 100, "label": [f"c{w}" for w in which]}
    )
    task = TaskConfig(label="label")
    results = []
    for memory_mb in (4096, 0):  # in memory; then every split over budget: streamed a minibatch at a time
        head = HeadConfig(
            name="attentive",
            features="video/tokens",
            epochs=30,
            patience=30,
            batch_size=32,
            lr=3e-3,
            memory_mb=memory_mb,
        )
        tr, va = (load_split(head, task, manifest, fs, split) for split in ("train", "val"))
        assert isinstance(tr.x, DiskRows) == (memory_mb == 0)
        (trained,) = train_heads([head], task, tr, va)
        results.append(trained.bundle.predict(va, head)[1])
    assert results[0]["acc"] > 0.85 and results[1] == pytest.approx(results[0], abs=1e-6)
