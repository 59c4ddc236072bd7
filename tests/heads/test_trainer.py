import warnings

import numpy as np
import torch
import torch.nn.functional as F
from vidprobe.heads import trainer
from vidprobe.heads.config import HeadConfig
from vidprobe.heads.models import build_head
from vidprobe.heads.trainer import Standardizer, fit, fit_many, patience, seed_everything


def blobs(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    centres = torch.tensor([[4.0, 0, 0, 0], [0, 4.0, 0, 0], [0, 0, 4.0, 0]])
    return centres[y] + torch.randn(n, 4, generator=g), y


def train_once(cfg):
    seed_everything(cfg.seed)
    model = build_head(cfg, 4, 3)
    return fit(
        model,
        blobs(120, 0),
        blobs(60, 1),
        F.cross_entropy,
        cfg,
        lambda logits: {"acc": (logits.argmax(1) == blobs(60, 1)[1]).float().mean().item()},
    )


def test_linear_head_learns_separable_classes():
    fitted = train_once(HeadConfig(lr=0.05, epochs=60, batch_size=32))
    assert fitted.history[-1]["acc"] > 0.9
    assert fitted.history[-1]["train_loss"] < fitted.history[0]["train_loss"]


def test_same_seed_same_weights_bit_for_bit():
    a, b = (train_once(HeadConfig(lr=0.05, epochs=20, batch_size=16, seed=4)) for _ in range(2))
    for ta, tb in zip(a.model.state_dict().values(), b.model.state_dict().values()):
        assert torch.equal(ta, tb)


def test_early_stopping_keeps_best_epoch():
    fitted = train_once(HeadConfig(lr=0.5, epochs=300, batch_size=8, patience=5))
    losses = [row["val_loss"] for row in fitted.history]
    assert len(fitted.history) < 300
    assert fitted.best_epoch == 1 + losses.index(min(losses))
    assert len(fitted.history) - fitted.best_epoch == 5


def test_a_head_waits_as_long_as_its_best_took_at_least_100_steps_and_at_most_patience():
    cfg = HeadConfig()  # patience 30, min_patience 5
    assert patience(cfg, 3, steps_per_epoch=50) == 5  # learnt in 3 epochs on plenty of data: 5 more
    assert patience(cfg, 12, steps_per_epoch=50) == 12 and patience(cfg, 45, steps_per_epoch=50) == 30
    assert patience(cfg, 3, steps_per_epoch=10) == 10  # 100 steps
    assert patience(cfg, 3, steps_per_epoch=1) == 30  # a few dozen clips, one step an epoch: the whole patience
    assert patience(HeadConfig(min_patience=30), 3, steps_per_epoch=50) == 30  # the fixed rule of before
    g = torch.Generator().manual_seed(0)
    noise = [(torch.randn(n, 16, generator=g), torch.randint(0, 3, (n,), generator=g)) for n in (120, 60)]
    for batch_size, wait in ((8, 7), (120, 30)):  # 120 clips: 15 steps an epoch (100 steps: 7 epochs), or one
        cfg = HeadConfig(lr=0.05, epochs=300, batch_size=batch_size)
        seed_everything(0)
        fitted = fit(build_head(cfg, 16, 3), *noise, F.cross_entropy, cfg)  # nothing to learn: best early
        assert fitted.best_epoch < 7 and len(fitted.history) - fitted.best_epoch == wait


def test_standardizer_uses_given_rows_only():
    x = torch.tensor([[1.0, 10.0], [3.0, 10.0]])
    s = Standardizer.fit(x)
    assert torch.allclose(s(x), torch.tensor([[-1.0, 0.0], [1.0, 0.0]]))


def test_standardizer_statistics_chunk_by_chunk_equal_numpy(monkeypatch):
    monkeypatch.setattr(trainer, "STATS_CHUNK_ROWS", 7)  # 50 rows: 8 chunks
    x = torch.randn(50, 3, 4, generator=torch.Generator().manual_seed(0)) * 3 + 5
    x[::4, :, 1] = float("nan")  # missing values are left out of the statistics
    x[:, :, 3] = float("nan")  # a column with no value at all: mean 0, std 1
    s = Standardizer.fit(x)
    rows = x.flatten(0, 1).double().numpy()
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want_mean, want_std = np.nan_to_num(np.nanmean(rows, 0)), np.nan_to_num(np.nanstd(rows, 0), nan=1.0)
    np.testing.assert_allclose(s.mean.numpy(), want_mean, rtol=1e-6)
    np.testing.assert_allclose(s.std.numpy(), want_std, rtol=1e-5)
    z = s(x)
    assert not z.isnan().any() and abs(float(z[..., 0].mean())) < 1e-5


def test_heads_trained_together_equal_heads_trained_alone():
    cfgs = [
        HeadConfig(lr=lr, weight_decay=wd, epochs=epochs, batch_size=16, patience=4, monitor="acc", seed=3)
        for lr, wd, epochs in ((0.1, 0.0, 40), (0.01, 0.01, 30), (0.001, 0.1, 12))
    ]
    alone = [train_once(c) for c in cfgs]
    models = []
    for c in cfgs:
        seed_everything(c.seed)
        models.append(build_head(c, 4, 3))
    together = fit_many(
        models,
        blobs(120, 0),
        blobs(60, 1),
        F.cross_entropy,
        cfgs,
        lambda logits: {"acc": (logits.argmax(1) == blobs(60, 1)[1]).float().mean().item()},
    )
    for a, t in zip(alone, together):
        assert a.best_epoch == t.best_epoch and len(a.history) == len(t.history)  # each stops on its own
        for key, value in a.model.state_dict().items():
            torch.testing.assert_close(t.model.state_dict()[key], value, rtol=1e-5, atol=1e-6)
    assert len({len(t.history) for t in together}) > 1  # and they did stop at different epochs


def test_max_norm_holds_after_every_step():
    cfg = HeadConfig(lr=0.5, epochs=5, batch_size=8, max_norm=0.3)
    seed_everything(0)
    model = build_head(cfg, 4, 3)
    worst = []
    model.register_forward_pre_hook(lambda m, _: worst.append(m.weight.norm(dim=1).max().item()))
    fit(model, blobs(120, 0), blobs(60, 1), F.cross_entropy, cfg)
    assert len(worst) > 50 and max(worst[1:]) <= 0.3 + 1e-6  # every forward after the first step
    free = HeadConfig(lr=0.5, epochs=5, batch_size=8)
    seed_everything(0)
    assert (
        fit(build_head(free, 4, 3), blobs(120, 0), blobs(60, 1), F.cross_entropy, free).model.weight.norm(dim=1).max()
        > 0.3
    )


def test_second_stage_trains_the_classifier_layer_alone():
    import copy

    from vidprobe.heads.trainer import classifier_layers, retrain_classifier

    cfg = HeadConfig(
        name="mlp",
        hidden=16,
        dropout=0.0,
        lr=0.05,
        epochs=10,
        batch_size=16,
        max_norm=0.5,
        stage2_epochs=5,
        patience=10,
    )
    seed_everything(0)
    first = fit(build_head(cfg, 4, 3), blobs(120, 0), blobs(60, 1), F.cross_entropy, cfg)
    before = copy.deepcopy(first.model.state_dict())
    last = classifier_layers(first.model)[0]
    second = retrain_classifier(first, blobs(120, 0), blobs(60, 1), F.cross_entropy, cfg)
    after = second.model.state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert (
        moved == {"4.weight", "4.bias"} and second.model[4] is last
    )  # Sequential(LayerNorm, Linear, GELU, Dropout, Linear)
    assert last.weight.norm(dim=1).max() <= 0.5 + 1e-6
    assert [r.get("stage") for r in second.history[-5:]] == [2] * 5 and second.history[-1]["epoch"] == len(
        second.history
    )
    assert all(p.requires_grad for p in second.model.parameters())  # gradients switched back on


def test_heads_train_where_head_device_says_and_come_back_to_the_cpu():
    import torch.nn.functional as F
    from vidprobe.heads.config import HeadConfig, TaskConfig
    from vidprobe.heads.losses import BalancedBCE
    from vidprobe.heads.models import build_head
    from vidprobe.heads.tasks import head_problems
    from vidprobe.heads.trainer import fit, move_tensors

    torch.manual_seed(0)
    x, y = torch.randn(64, 8), torch.randint(0, 3, (64,))
    runs = {}
    for device in ("auto", "cpu"):
        cfg = HeadConfig(epochs=3, batch_size=16, device=device)
        torch.manual_seed(0)
        fitted = fit(build_head(cfg, 8, 3), (x, y), (x[:16], y[:16]), F.cross_entropy, cfg)
        assert all(p.device.type == "cpu" for p in fitted.model.parameters())
        runs[device] = fitted.model.state_dict()
    assert all(torch.equal(runs["auto"][k], runs["cpu"][k]) for k in runs["cpu"])  # auto is the CPU here

    loss = BalancedBCE(torch.ones(3))
    move_tensors(loss, torch.device("cpu"))
    move_tensors(F.mse_loss, torch.device("cpu"))  # a plain function holds nothing to move
    assert loss.weight.device.type == "cpu"
    task = TaskConfig(label="label")
    assert any("use auto, cpu, cuda or cuda:N" in p for p in head_problems(HeadConfig(device="tpu"), task))
    if not torch.cuda.is_available():
        assert any("sees no CUDA device" in p for p in head_problems(HeadConfig(device="cuda"), task))
