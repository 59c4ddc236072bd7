import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import top_k_accuracy_score
from sklearn.utils.class_weight import compute_class_weight
from vidprobe.heads.config import HeadConfig
from vidprobe.heads.errors import HeadConfigError
from vidprobe.heads.losses import build_loss, ccc_loss, class_weights
from vidprobe.heads.metrics import ccc, top_k
from vidprobe.heads.models import build_head
from vidprobe.heads.schedules import lr_at
from vidprobe.heads.trainer import fit


def data(seed=0, n=64, c=4):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g), torch.randint(0, c, (n,), generator=g)


def test_focal_with_gamma_zero_is_cross_entropy():
    logits, y = data()
    focal = build_loss("focal", "class", HeadConfig(focal_gamma=0.0), y)
    torch.testing.assert_close(focal(logits, y), F.cross_entropy(logits, y))
    hard = build_loss("focal", "class", HeadConfig(focal_gamma=2.0), y)
    assert hard(logits, y) < F.cross_entropy(logits, y)  # easy examples are down-weighted


def test_multilabel_focal_with_gamma_zero_is_bce():
    logits, _ = data()
    targets = (torch.rand(64, 4) > 0.5).float()
    loss = build_loss("focal", "multilabel", HeadConfig(focal_gamma=0.0), targets)
    torch.testing.assert_close(loss(logits, targets), F.binary_cross_entropy_with_logits(logits, targets))


def test_class_weights_balanced_match_sklearn_and_effective_numbers():
    y = torch.tensor([0] * 50 + [1] * 10 + [2] * 2)
    w = class_weights(HeadConfig(class_weights="balanced"), torch.bincount(y))
    np.testing.assert_allclose(
        w.numpy(), compute_class_weight("balanced", classes=np.arange(3), y=y.numpy()), rtol=1e-6
    )
    cb = class_weights(HeadConfig(class_weights="effective", cb_beta=0.9), torch.bincount(y))
    raw = (1 - 0.9) / (1 - 0.9 ** np.array([50.0, 10.0, 2.0]))
    np.testing.assert_allclose(cb.numpy(), raw * 3 / raw.sum(), rtol=1e-6)
    weighted = build_loss("ce", "class", HeadConfig(class_weights="balanced", label_smoothing=0.1), y)
    logits = torch.randn(62, 3)
    torch.testing.assert_close(weighted(logits, y), F.cross_entropy(logits, y, weight=w, label_smoothing=0.1))


def test_ccc_loss_and_metric_agree_with_the_formula():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=100), rng.normal(size=100) * 0.5 + 0.3
    expected = 2 * np.cov(a, b, bias=True)[0, 1] / (a.var() + b.var() + (a.mean() - b.mean()) ** 2)
    assert ccc(a, b) == pytest.approx(expected)
    loss = ccc_loss(torch.tensor(b)[:, None], torch.tensor(a)[:, None])
    assert loss.item() == pytest.approx(1 - expected, abs=1e-6)


def test_top5_matches_sklearn():
    rng = np.random.default_rng(1)
    y, scores = rng.integers(0, 10, 50), rng.random((50, 10))
    assert top_k(y, scores, 5) == pytest.approx(top_k_accuracy_score(y, scores, k=5, labels=range(10)))


def test_unknown_loss_lists_the_valid_ones():
    with pytest.raises(HeadConfigError, match="valid: ccc, huber, l1, mse"):
        build_loss("focal", "regression", HeadConfig(), torch.zeros(3, 1))


def test_cosine_schedule_with_warmup():
    cfg = HeadConfig(lr=1.0, epochs=10, warmup_epochs=1, schedule="cosine")
    lrs = [lr_at(cfg, e) for e in range(1, 11)]
    assert lrs[0] == pytest.approx(0.5) and lrs[1] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:])) and lrs[-1] < 0.05


def test_mlp_head_and_early_stopping_on_a_metric():
    _, y = data(n=200, c=3)
    x = torch.randn(200, 4) + torch.nn.functional.one_hot(y, 4).float() * 3  # separable
    cfg = HeadConfig(name="mlp", hidden=16, epochs=60, lr=0.01, batch_size=32, monitor="acc", patience=10)
    model = build_head(cfg, 4, 3)

    def acc(logits):
        return {"acc": (logits.argmax(1) == y[150:]).float().mean().item()}

    fitted = fit(model, (x[:150], y[:150]), (x[150:], y[150:]), F.cross_entropy, cfg, acc)
    best = max(row["acc"] for row in fitted.history)
    assert best > 0.9 and fitted.history[fitted.best_epoch - 1]["acc"] == best
    with pytest.raises(HeadConfigError, match="head.monitor"):
        fit(build_head(cfg, 4, 3), (x, y), (x, y), F.cross_entropy, HeadConfig(monitor="mAP", epochs=1))


def test_ldam_without_margins_is_scaled_cross_entropy_and_drw_switches_weights():
    logits, y = data()
    cfg = HeadConfig(ldam_max_margin=0.0, ldam_scale=1.0, drw_epoch=3)
    loss = build_loss("ldam", "class", cfg, y)
    torch.testing.assert_close(loss(logits, y), F.cross_entropy(logits, y))
    loss.epoch = 3
    w = class_weights(HeadConfig(class_weights="effective"), torch.bincount(y))
    torch.testing.assert_close(loss(logits, y), F.cross_entropy(logits, y, weight=w))
    margins = build_loss("ldam", "class", HeadConfig(ldam_max_margin=0.5), torch.tensor([0] * 100 + [1])).margins
    assert margins[1] == pytest.approx(0.5) and margins[0] == pytest.approx(0.5 / 100**0.25)


def test_eql_drops_only_the_negatives_of_rare_classes():
    targets = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0]])  # class 1 is rare (1 positive)
    loss = build_loss("eql", "multilabel", HeadConfig(eql_tail_count=2), targets)
    logits = torch.zeros(3, 2, requires_grad=True)
    loss(logits, targets).backward()
    assert logits.grad[0, 1] == 0 and logits.grad[1, 1] == 0  # rare class, negative: no push down
    assert logits.grad[2, 1] != 0 and logits.grad[0, 0] != 0
    common = build_loss("eql", "multilabel", HeadConfig(eql_tail_count=0), targets)
    torch.testing.assert_close(common(logits, targets), F.binary_cross_entropy_with_logits(logits, targets))


def test_balanced_sampler_draws_classes_equally():
    y = torch.tensor([0] * 90 + [1] * 10)
    w = (1.0 / torch.bincount(y).float())[y]
    drawn = y[torch.multinomial(w, 10000, replacement=True, generator=torch.Generator().manual_seed(0))]
    assert abs(drawn.float().mean().item() - 0.5) < 0.03


def test_attention_head_finds_the_informative_time_step():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (400,), generator=g)
    x = torch.randn(400, 6, 8, generator=g)
    x[:, 2, 0] += 4 * (2 * y - 1)  # only time step 2 carries the class
    cfg = HeadConfig(name="attention", lr=0.03, epochs=80, batch_size=64, patience=80)
    torch.manual_seed(0)  # the head's initial weights: the same whatever ran before
    model = fit(build_head(cfg, 8, 2), (x[:300], y[:300]), (x[300:], y[300:]), F.cross_entropy, cfg).model
    with torch.no_grad():
        acc = (model(x[300:]).argmax(1) == y[300:]).float().mean().item()
        weights = model.score(x[300:]).softmax(1).mean(0).flatten()
    assert acc > 0.9 and weights.argmax().item() == 2


def test_one_schedule_for_heads_and_fine_tuning():
    """Per step: warm-up to the peak on its last step (fine-tuning), or on the step after it (heads), then
    cosine to zero at the end; constant keeps the peak."""
    from vidprobe.heads.schedules import warmup_then_decay

    steps = [warmup_then_decay(1.0, s, 4, 20) for s in range(20)]
    assert steps[:4] == [0.25, 0.5, 0.75, 1.0] and steps[4] == 1.0 and steps[-1] < 0.01
    assert [warmup_then_decay(2.0, s, 3, 10, peak_after_warmup=True) for s in range(4)] == [0.5, 1.0, 1.5, 2.0]
    assert warmup_then_decay(0.1, 9, 2, 10, decay="constant") == 0.1
