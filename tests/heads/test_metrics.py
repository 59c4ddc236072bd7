import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm
from vidprobe.heads.metrics import accuracy, confusion, macro_f1, pearson, regression_metrics, spearman


@pytest.mark.parametrize("seed", range(5))
def test_classification_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    y_true, y_pred = rng.integers(0, 5, 40), rng.integers(0, 6, 40)
    assert accuracy(y_true, y_pred) == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert macro_f1(y_true, y_pred, 6) == pytest.approx(skm.f1_score(y_true, y_pred, average="macro"))
    np.testing.assert_array_equal(confusion(y_true, y_pred, 6), skm.confusion_matrix(y_true, y_pred, labels=range(6)))


@pytest.mark.parametrize("seed", range(5))
def test_correlations_match_scipy_with_ties(seed):
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 6, 30).astype(float), rng.normal(size=30)  # `a` has many ties
    assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic)
    assert pearson(a, b) == pytest.approx(stats.pearsonr(a, b).statistic)


def test_regression_metrics_names():
    y = np.array([[1.0, 2.0], [2.0, 1.0], [3.0, 5.0]])
    out = regression_metrics(y, y + 0.5, ["speed", "brightness"])
    assert out["spearman/speed"] == pytest.approx(1.0) and out["mae/brightness"] == pytest.approx(0.5)
    assert out["spearman/mean"] == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(5))
def test_average_precision_matches_sklearn_with_ties(seed):
    from vidprobe.heads.metrics import average_precision

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 50)
    y[0] = 1
    scores = np.round(rng.random(50), 1)  # many ties
    assert average_precision(y, scores) == pytest.approx(skm.average_precision_score(y, scores))


def test_multilabel_metrics_segments_and_empty_classes():
    from vidprobe.heads.metrics import multilabel_metrics

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, (40, 4))
    y[:, 3] = 0  # a class with no positives is left out of mAP, and counted
    s = rng.random((40, 4))
    out = multilabel_metrics(y, s, ["a", "b", "c", "d"], {"a": "head", "b": "tail", "c": "tail", "d": "tail"})
    per_class = [skm.average_precision_score(y[:, j], s[:, j]) for j in range(3)]
    assert out["mAP"] == pytest.approx(np.mean(per_class)) and out["classes_without_positives"] == 1
    assert out["mAP_head"] == pytest.approx(per_class[0]) and out["mAP_tail"] == pytest.approx(np.mean(per_class[1:]))
    assert "mAP_middle" not in out


def test_f1_thresholds_reach_the_best_f1_sklearn_measures():
    from sklearn.metrics import f1_score
    from vidprobe.heads.metrics import f1_thresholds

    rng = np.random.default_rng(0)
    y = (rng.random((60, 4)) < 0.3).astype(int)
    y[:, 3] = 0  # no positives: the default threshold
    scores = np.clip(y * 0.3 + rng.random((60, 4)) * 0.8, 0, 1).round(2)  # ties included
    found = f1_thresholds(y, scores)
    assert found[3] == 0.5
    for j in range(3):
        best = max(f1_score(y[:, j], scores[:, j] >= t) for t in np.unique(scores[:, j]))
        assert f1_score(y[:, j], scores[:, j] >= found[j]) == pytest.approx(best)


def test_ranks_average_ties_as_scipy_does():
    from vidprobe.heads.metrics import _ranks

    rng = np.random.default_rng(0)
    for x in (
        rng.integers(0, 5, 50).astype(float),
        rng.normal(size=30),
        np.array([2.0]),
        np.array([]),
        np.array([1.0, 1.0, 1.0]),
    ):
        np.testing.assert_array_equal(_ranks(x) + 1, stats.rankdata(x))
