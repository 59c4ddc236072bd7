"""The head bundle: heads.pt read and written as before (same bytes), and predictions from it."""

import numpy as np
import torch
from vidprobe.heads.bundle import HeadBundle
from vidprobe.heads.config import HeadConfig
from vidprobe.heads.data import LabeledFeatures
from vidprobe.heads.models import build_head


def saved_the_old_way(path):
    """heads.pt as `vidprobe train` wrote it before the bundle had a type: a plain dict, in this order."""
    torch.manual_seed(0)
    head = build_head(HeadConfig(), 4, 3).state_dict()
    bundle = {
        "feat_mean": torch.zeros(4),
        "feat_std": torch.ones(4),
        "feat_l2": False,
        "dims": None,
        "inputs": {},
        "classes": ["a", "b", "c"],
        "label_head": head,
        "one_vs_rest": False,
        "traits": ["t"],
        "trait_groups": [[0]],
        "traits_heads": [build_head(HeadConfig(), 4, 1).state_dict()],
        "trait_mean": torch.tensor([2.0]),
        "trait_std": torch.tensor([0.5]),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(bundle, path)
    return path


def test_same_bytes_on_disk(tmp_path):
    old = saved_the_old_way(tmp_path / "old" / "heads.pt")
    bundle = HeadBundle.load(old)
    assert bundle.classes == ["a", "b", "c"] and bundle.multilabel_head is None and bundle.traits == ["t"]
    (tmp_path / "new").mkdir()
    assert bundle.save(tmp_path / "new" / "heads.pt").read_bytes() == old.read_bytes()


def test_predict_gives_probabilities_and_traits(tmp_path):
    bundle = HeadBundle.load(saved_the_old_way(tmp_path / "heads.pt"))
    x = torch.randn(5, 4)
    data = LabeledFeatures([f"s{i}" for i in range(5)], x, ["a", "b", "c", "a", "b"], None, np.arange(5.0)[:, None])
    pred, metrics, tables = bundle.predict(data, HeadConfig())
    layer = torch.nn.Linear(4, 3)
    layer.load_state_dict(bundle.label_head)
    probs = layer(x).softmax(1).detach()
    assert list(pred.pred) == [bundle.classes[i] for i in probs.argmax(1)]
    np.testing.assert_allclose(pred.confidence, probs.max(1).values.numpy(), rtol=1e-6)
    trait = torch.nn.Linear(4, 1)
    trait.load_state_dict(bundle.traits_heads[0])
    np.testing.assert_allclose(pred["pred/t"], (trait(x).detach()[:, 0] * 0.5 + 2.0).numpy(), rtol=1e-6)
    assert {"acc", "macro_f1", "spearman/t"} <= set(metrics) and list(tables) == ["label"]


def test_multilabel_columns_and_thresholds_without_targets():
    torch.manual_seed(0)
    bundle = HeadBundle(torch.zeros(4), torch.ones(4))
    bundle.set_multilabel_head(
        ["a", "b", "c"], build_head(HeadConfig(), 4, 3).state_dict(), {"a": "head"}, [0.0, 1.0, 0.5]
    )  # a: always present, b: never
    x = torch.randn(6, 4)
    pred, metrics, tables = bundle.predict(
        LabeledFeatures([str(i) for i in range(6)], x, None, None, None), HeadConfig()
    )
    assert metrics == {} and tables == {} and "labels" not in pred  # new videos: predictions only
    layer = torch.nn.Linear(4, 3)
    layer.load_state_dict(bundle.multilabel_head)
    scores = layer(x).sigmoid().detach().numpy()
    np.testing.assert_allclose(pred[["score/a", "score/b", "score/c"]].to_numpy(), scores, rtol=1e-6)
    expected = ["|".join(c for c, on in zip("abc", (True, False, s >= 0.5)) if on) for s in scores[:, 2]]
    assert list(pred.pred_labels) == expected
