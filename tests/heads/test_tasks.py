import math

import numpy as np
import torch
from vidprobe.heads.config import HeadConfig, TaskConfig
from vidprobe.heads.data import LabeledFeatures
from vidprobe.heads.tasks import batch_key, can_batch, regressor_job, train_heads, train_regressors
from vidprobe.heads.trainer import Standardizer, fit


def traits_split(n, seed):
    g = np.random.default_rng(seed)
    x = g.normal(size=(n, 8)).astype(np.float32)
    y = x[:, :3] + 0.5 * g.normal(size=(n, 3))
    y[::7, 1] = np.nan  # missing values: those rows are left out
    return LabeledFeatures([f"s{i}" for i in range(n)], torch.from_numpy(x), None, None, y)


MIXED = [
    HeadConfig(name="linear", regression_loss="mse", lr=0.01, weight_decay=0.0),
    HeadConfig(name="mlp", regression_loss="ccc", lr=0.003, weight_decay=0.01, hidden=16, dropout=0.2),
    HeadConfig(name="linear", regression_loss="huber", lr=0.03, weight_decay=0.001, patience=3),
    HeadConfig(name="mlp", regression_loss="mse", lr=1e8, weight_decay=0.0, hidden=16),  # diverges
    HeadConfig(name="mlp", regression_loss="mse", lr=0.001, weight_decay=0.1, hidden=8, dropout=0.5, epochs=9),
]


def test_mixed_trait_heads_trained_together_equal_each_trained_alone():
    tr, va = traits_split(200, 0), traits_split(80, 1)
    scaler = Standardizer(torch.tensor(np.nanmean(tr.traits, 0)).float(), torch.tensor(np.nanstd(tr.traits, 0)).float())
    heads = [
        HeadConfig(
            **{**h.__dict__, "batch_size": 32, "seed": 5, "epochs": min(h.epochs, 25), "patience": min(h.patience, 6)}
        )
        for h in MIXED
    ]
    alone = [fit(*regressor_job(h, ["a", "b", "c"], tr, va, scaler, [0, 1, 2])) for h in heads]
    together = train_regressors(heads, ["a", "b", "c"], tr, va, scaler)
    for a, t in zip(alone, together):
        assert a.best_epoch == t.best_epoch and len(a.history) == len(t.history)  # each stops on its own
        for key, value in a.model.state_dict().items():
            torch.testing.assert_close(t.model.state_dict()[key], value, rtol=0, atol=1e-6, equal_nan=True)
        for ra, rt in zip(a.history, t.history):
            assert ra.keys() == rt.keys()
            for k in ra:
                assert ra[k] == rt[k] or (math.isnan(ra[k]) and math.isnan(rt[k])) or abs(ra[k] - rt[k]) < 1e-6, k
    assert math.isnan(together[3].history[-1]["train_loss"])  # the diverged head blew up, alone as with the others
    assert all(math.isfinite(row["train_loss"]) for t in together[:3] + together[4:] for row in t.history)
    assert len({len(t.history) for t in together}) > 1


def test_train_heads_gives_every_batched_trait_head_its_own_bundle():
    tr, va = traits_split(120, 0), traits_split(40, 1)
    task = TaskConfig(label=None, traits=["a", "b", "c"])
    heads = [HeadConfig(**{**h.__dict__, "epochs": 4, "batch_size": 32}) for h in MIXED[:3]]
    trained = train_heads(heads, task, tr, va)
    alone = train_heads(heads[1:2], task, tr, va)[0]
    assert [set(t.histories) for t in trained] == [{"traits"}] * 3
    for key, value in alone.bundle.traits_heads[0].items():
        torch.testing.assert_close(trained[1].bundle.traits_heads[0][key], value, rtol=0, atol=1e-6)


def test_what_can_train_in_one_pass():
    traits = TaskConfig(label=None, traits=["a"])
    assert can_batch(HeadConfig(name="mlp"), traits) and not can_batch(HeadConfig(name="mlp"), TaskConfig())
    assert not can_batch(HeadConfig(), TaskConfig(label=None, traits=["a"], mode="per_target"))
    assert batch_key(HeadConfig(name="mlp", regression_loss="ccc", lr=1), traits) == batch_key(HeadConfig(), traits)
    assert batch_key(HeadConfig(batch_size=8), traits) != batch_key(HeadConfig(), traits)  # other batches
    assert batch_key(HeadConfig(loss="focal"), TaskConfig()) != batch_key(HeadConfig(), TaskConfig())
