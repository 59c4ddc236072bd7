"""One trainer for every target kind: a class (softmax, or one-vs-rest per class), several classes per sample
(multi-label), numeric traits (jointly, or one head per trait). `train_heads` trains what the task asks
for on standardised features and returns the head bundle and the learning curves.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
from joblib import Parallel, delayed
from vidprobe.features.store import FeatureSet
from vidprobe.heads.bundle import HeadBundle
from vidprobe.heads.config import HeadConfig, TaskConfig
from vidprobe.heads.data import LabeledFeatures, few_shot, multi_hot
from vidprobe.heads.errors import HeadConfigError
from vidprobe.heads.losses import balanced_multilabel_bce, build_loss, check_loss
from vidprobe.heads.metrics import (
    classification_metrics,
    f1_thresholds,
    metric_names,
    multilabel_metrics,
    regression_metrics,
)
from vidprobe.heads.models import HEADS, SEQUENCE_HEADS, build_head, prompt_linear
from vidprobe.heads.stream import forward_chunks
from vidprobe.heads.trainer import Fitted, Standardizer, fit, fit_many, retrain_classifier, seed_everything


@dataclass
class Trained:
    """What training one head config gives: its bundle, its learning curves, the data it was checked on."""

    bundle: HeadBundle
    histories: dict[str, list[dict]] = field(default_factory=dict)  # "label", "multilabel", "traits", "trait-<t>"
    val: LabeledFeatures | None = None  # validation split (k_val per class when few-shot)
    n_train: int = 0


def head_problems(head: HeadConfig, task: TaskConfig, need_targets: bool = True) -> list[str]:
    """Every reason this head cannot train this task, found from the settings alone (nothing is read): something to
    train (unless not `need_targets`: a config may only index and embed), a registered head and losses, a head
    that can train the targets, a `monitor` every target reports."""
    problems = []
    if need_targets and not (task.label or task.multilabel or task.traits):
        problems.append(
            "task: nothing to train: set task.label (a class column), task.multilabel (a '|'-joined "
            "class column) and/or task.traits (numeric columns)"
        )
    if head.name not in HEADS:
        problems.append(f"head.name: unknown head {head.name!r}; valid: {', '.join(sorted(HEADS))}")
    problems += [
        p
        for p in (
            check_loss(head.loss, "class"),
            check_loss(head.multilabel_loss, "multilabel"),
            check_loss(head.regression_loss, "regression"),
        )
        if p
    ]
    if head.name == "attentive" and (
        head.queries < 1 or (head.heads is not None and head.heads < 1) or head.mlp_ratio <= 0
    ):
        problems.append(
            f"head.queries / head.heads / head.mlp_ratio: {head.queries} / {head.heads} / "
            f"{head.mlp_ratio}; queries and heads must be >= 1, mlp_ratio > 0"
        )
    if head.device not in ("auto", "cpu"):
        if not re.fullmatch(r"cuda(:\d+)?", head.device):
            problems.append(f"head.device: {head.device!r}; use auto, cpu, cuda or cuda:N")
        elif not torch.cuda.is_available():
            problems.append(f"head.device={head.device}: this torch sees no CUDA device; use auto or cpu")
    if head.name in ("zero-shot", "coop") and (task.traits or task.multilabel or not task.label):
        problems.append(
            f"head.name={head.name} classifies task.label from class prompts; set task.traits=[] "
            "and task.multilabel=null, or train those with another head"
        )
    targets = {
        "task.label": metric_names(True, False, []),
        "task.multilabel": metric_names(False, True, []),
        "task.traits": metric_names(False, False, task.traits),
    }
    present = {
        k: v
        for k, v in targets.items()
        if {"task.label": task.label, "task.multilabel": task.multilabel, "task.traits": task.traits}[k]
    }
    missing = [k for k, names in present.items() if head.monitor != "val_loss" and head.monitor not in names]
    if missing:
        shared = set.intersection(*present.values()) if present else set()
        problems.append(
            f"head.monitor: {head.monitor!r} is not measured for {' and '.join(missing)}; use val_loss"
            + (f" or one of {', '.join(sorted(shared))}" if shared else " (each head of the run monitors it)")
        )
    return problems


def check_task(head: HeadConfig, task: TaskConfig) -> None:
    """Something to train, and a head that can train it (`head_problems`, raised at once)."""
    if problems := head_problems(head, task):
        raise HeadConfigError("\n  ".join(problems))


TRAIT_FREE = {
    "lr",
    "weight_decay",
    "name",
    "regression_loss",
    "hidden",
    "dropout",
    "epochs",
    "patience",
    "min_patience",
    "schedule",
    "warmup_epochs",
    "queries",
    "heads",
    "mlp_ratio",
}  # what joint trait heads trained in one pass may differ in
CLASS_FREE = {"lr", "weight_decay", "queries", "heads", "mlp_ratio"}  # what class heads in one pass may differ in


def can_batch(head: HeadConfig, task: TaskConfig) -> bool:
    """Heads that train in one pass over the data with others (see `batch_key`): a joint linear or attentive class
    head from random weights, or a joint linear / MLP / attentive head over traits alone. One pass pays most for
    attentive heads: their token grids are the largest inputs, often streamed from disk."""
    if task.mode != "joint" or head.init != "random" or task.multilabel:
        return False
    if task.label:
        return not task.traits and head.name in ("linear", "attentive")
    return bool(task.traits) and head.name in ("linear", "mlp", "attentive")


def batch_key(head: HeadConfig, task: TaskConfig) -> tuple | None:
    """What heads that train in one pass must share (None: this one trains alone). Class heads may differ
    in lr, weight decay and the attentive head's shape (`CLASS_FREE`); trait heads also in architecture, loss,
    schedule and stopping (`TRAIT_FREE`)."""
    if not can_batch(head, task):
        return None
    free = CLASS_FREE if task.label else TRAIT_FREE
    shape = ("sequence", head.name in SEQUENCE_HEADS)  # heads that share a batch take inputs of one shape
    return (shape, *((k, repr(v)) for k, v in sorted(asdict(head).items()) if k not in free))


def train_heads(
    heads: list[HeadConfig],
    task: TaskConfig,
    tr: LabeledFeatures,
    va: LabeledFeatures,
    *,
    classes: dict | None = None,
    prompts: tuple[FeatureSet, str] | None = None,
    coop_clip: tuple | None = None,
    inputs: dict | None = None,
) -> list[Trained]:
    """Train `heads` (one, or several that `can_batch`, in one pass) for `task`.

    `classes`: the class list and long-tail segments of a multi-label dataset (else the classes seen in
    train); `prompts`: the class-prompt feature set and key (zero-shot, prompt-initialised heads);
    `coop_clip`: the CLIP whose text tower CoOp uses (see heads.coop.build_coop); `inputs`: config hashes
    of the other feature sets read, recorded in the bundle.
    """
    head = heads[0]
    if head.k_train or head.k_val:
        tr, va = few_shot(tr, head.k_train, head.seed), few_shot(va, head.k_val, head.seed)
    if head.prompted and head.normalize != "l2":
        print("note: class-prompt heads compare directions: features are L2-normalised (head.normalize=l2)")
    feat = Standardizer.fit(tr.x, passthrough=len(tr.dims or []), l2=head.prompted or head.normalize == "l2")
    tokens = int(tr.x.shape[1]) if len(tr.x.shape) == 3 else None
    tr_s, va_s = replace(tr, x=feat(tr.x)), replace(va, x=feat(va.x))
    out = [
        Trained(
            HeadBundle(feat.mean, feat.std, feat.l2, tr.dims, dict(inputs or {}), tokens), val=va, n_train=len(tr.ids)
        )
        for _ in heads
    ]
    if task.label:
        names = sorted(set(tr.labels))
        fitted_all = train_classifiers(heads, task, tr_s, va_s, names, prompts, coop_clip)
        for trained, fitted in zip(out, fitted_all):
            trained.bundle.set_label_head(
                names, fitted.model.state_dict(), task.mode == "per_target" and not head.prompted
            )
            trained.histories["label"] = fitted.history
            print(f"label head: {len(names)} classes, best epoch {fitted.best_epoch}/{len(fitted.history)}")
    first = out[0]
    if task.multilabel:
        info = classes or {"classes": sorted({n for names in tr.multi for n in names}), "segment": {}}
        fitted = train_multilabel(head, tr_s, va_s, info["classes"])
        with torch.no_grad():
            val_scores = forward_chunks(fitted.model, va_s.x).sigmoid().numpy()
        thresholds = f1_thresholds(multi_hot(va.multi, info["classes"]).numpy(), val_scores).tolist()
        first.bundle.set_multilabel_head(
            info["classes"], fitted.model.state_dict(), info.get("segment", {}), thresholds
        )
        first.histories["multilabel"] = fitted.history
        print(f"multilabel head: {len(info['classes'])} classes, best epoch {fitted.best_epoch}/{len(fitted.history)}")
    if task.traits:
        # per trait, over the samples that have it
        scaler = Standardizer(
            torch.tensor(np.nanmean(tr.traits, 0)).float(),
            torch.tensor(np.nanstd(tr.traits, 0)).float().clamp_min(1e-6),
        )
        n = len(task.traits)
        groups = [[j] for j in range(n)] if task.mode == "per_target" else [list(range(n))]
        if len(heads) > 1:  # joint heads that `can_batch`: one pass, each head with its own bundle
            fitted = train_regressors(heads, task.traits, tr_s, va_s, scaler)
            for trained, f in zip(out, fitted):
                trained.bundle.set_trait_heads(list(task.traits), groups, [f.model.state_dict()], scaler)
                trained.histories["traits"] = f.history
                print(f"traits head: best epoch {f.best_epoch}/{len(f.history)}")
        else:
            jobs = [regressor_job(head, task.traits, tr_s, va_s, scaler, cols) for cols in groups]
            fitted = Parallel(n_jobs=task.n_jobs if len(groups) > 1 else 1, prefer="threads")(
                delayed(fit)(*job) for job in jobs
            )
            first.bundle.set_trait_heads(list(task.traits), groups, [f.model.state_dict() for f in fitted], scaler)
            for cols, f in zip(groups, fitted):
                name = "traits" if len(groups) == 1 else f"trait-{task.traits[cols[0]]}"
                first.histories[name] = f.history
                print(f"{name} head: best epoch {f.best_epoch}/{len(f.history)}")
    return out


def class_prompts(
    head: HeadConfig, prompts: tuple[FeatureSet, str] | None, classes: list[str], dim: int
) -> torch.Tensor:
    """(classes, D) class-prompt embeddings (a feature set whose ids are the class names)."""
    if prompts is None:
        raise HeadConfigError(
            f"head.prompts: the {head.name} head (head.init={head.init}) needs a feature set of "
            "class-prompt embeddings, e.g. head.prompts=clip-prompts:text/pooled"
        )
    fs, key = prompts
    missing = [c for c in classes if c not in fs.rows]
    if missing:
        raise HeadConfigError(
            f"head.prompts: {fs.dir} has no prompt for {len(missing)} classes, e.g. {missing[:3]}; it has {fs.ids[:5]}"
        )
    values = torch.from_numpy(fs.get(key, classes)).float()
    if values.shape[1] != dim:
        raise HeadConfigError(
            f"head.prompts: prompt embeddings are {values.shape[1]}-d but {head.features} is "
            f"{dim}-d; use the text side of the same model that embedded the videos"
        )
    return values


def train_classifiers(
    heads: list[HeadConfig],
    task: TaskConfig,
    tr: LabeledFeatures,
    va: LabeledFeatures,
    classes: list[str],
    prompts: tuple[FeatureSet, str] | None = None,
    coop_clip: tuple | None = None,
) -> list[Fitted]:
    """The class head of each config; several (differing only in lr / weight decay) train in one pass."""
    head = heads[0]
    y = torch.tensor([classes.index(c) for c in tr.labels])
    seen = np.array([c in classes for c in va.labels])
    if not seen.all():
        print(
            f"warning: {int((~seen).sum())} validation samples have classes absent from train "
            f"({sorted(set(np.array(va.labels)[~seen]))}); early stopping ignores them, metrics count them wrong"
        )
    yv = torch.tensor([classes.index(c) for c in np.array(va.labels)[seen]], dtype=torch.long)
    xv = va.x[torch.from_numpy(seen)]
    seed_everything(head.seed)

    def val_metrics(logits: torch.Tensor) -> dict:
        return classification_metrics(yv.numpy(), logits.argmax(1).numpy(), len(classes), logits.numpy())

    if head.uses_prompts:
        if head.name not in ("zero-shot", "linear") or task.mode == "per_target":
            raise HeadConfigError(
                f"head.init=prompts: only a joint linear head starts from class prompts, not "
                f"{head.name!r} in task.mode={task.mode}"
            )
        model = prompt_linear(class_prompts(head, prompts, classes, tr.x.shape[-1]), head.logit_scale)
        if head.name == "zero-shot":  # nothing to train: the prompts are the classifier
            with torch.no_grad():
                return [Fitted(model.eval(), 0, [{"epoch": 0, **val_metrics(forward_chunks(model, xv))}])]
        models = [model]
    elif head.name == "coop":
        if task.mode == "per_target":
            raise HeadConfigError("head.name=coop learns one context for all classes: use task.mode=joint")
        from vidprobe.heads.coop import build_coop

        models = [build_coop(coop_clip, classes, head)]
    elif task.mode == "per_target":
        return [train_one_vs_rest(head, task, tr.x, y, xv, yv, len(classes), tr.dims)]
    else:
        models = []
        for h in heads:  # each initialised as it would be alone
            seed_everything(h.seed)
            models.append(build_head(h, tr.x.shape[-1], len(classes), tr.dims))
    loss = build_loss(head.loss, "class", head, y)
    weights = None
    if head.sampler == "balanced":
        weights = (1.0 / torch.bincount(y).float())[y]
    fitted = fit_many(models, (tr.x, y), (xv, yv), loss, heads, val_metrics, weights)
    if head.stage2_epochs:  # weight balancing: the classifier alone again, classes balanced by effective numbers
        balanced = build_loss(head.loss, "class", replace(head, class_weights="effective"), y)
        fitted = [retrain_classifier(f, (tr.x, y), (xv, yv), balanced, h, val_metrics) for f, h in zip(fitted, heads)]
    return fitted


def train_one_vs_rest(head: HeadConfig, task: TaskConfig, x, y, xv, yv, n_classes: int, dims) -> Fitted:
    """task.mode=per_target for a class: an independent binary head per class (BCE), in threads."""
    model = build_head(head, x.shape[-1], n_classes, dims, one_vs_rest=True)  # seeded, in order
    binary = replace(head, monitor="val_loss")  # each head stops on its own validation loss
    jobs = []
    for k, sub in enumerate(model.heads):
        yk, yvk = (y == k).float()[:, None], (yv == k).float()[:, None]
        jobs.append((sub, (x, yk), (xv, yvk), build_loss(head.multilabel_loss, "multilabel", head, yk), binary))
    fitted = Parallel(n_jobs=task.n_jobs, prefer="threads")(delayed(fit)(*job) for job in jobs)
    with torch.no_grad():
        logits = forward_chunks(model.eval(), xv)
    history = [
        {
            "class": k,
            "best_epoch": f.best_epoch,
            "epochs": len(f.history),
            "val_loss": f.history[f.best_epoch - 1]["val_loss"],
        }
        for k, f in enumerate(fitted)
    ]
    best = max(f.best_epoch for f in fitted)
    metrics = classification_metrics(yv.numpy(), logits.argmax(1).numpy(), n_classes, logits.numpy())
    return Fitted(model, best, history + [{"class": "all", **metrics}])


def train_multilabel(head: HeadConfig, tr: LabeledFeatures, va: LabeledFeatures, classes: list[str]) -> Fitted:
    y, yv = multi_hot(tr.multi, classes), multi_hot(va.multi, classes)
    seed_everything(head.seed)
    model = build_head(head, tr.x.shape[-1], len(classes), tr.dims)

    def val_metrics(logits: torch.Tensor) -> dict:
        return {"mAP": multilabel_metrics(yv.numpy(), logits.numpy(), classes)["mAP"]}

    loss = build_loss(head.multilabel_loss, "multilabel", head, y)
    fitted = fit(model, (tr.x, y), (va.x, yv), loss, head, val_metrics)
    if head.stage2_epochs:  # weight balancing: the classifier alone again, positives balanced by effective numbers
        fitted = retrain_classifier(fitted, (tr.x, y), (va.x, yv), balanced_multilabel_bce(head, y), head, val_metrics)
    return fitted


def regressor_job(
    head: HeadConfig,
    traits: list[str],
    tr: LabeledFeatures,
    va: LabeledFeatures,
    scaler: Standardizer,
    columns: list[int],
) -> tuple:
    """The arguments of `fit` for one head over the trait `columns`, on the samples that have all of them.

    Built in the calling thread, in order, so seeded initialisation does not depend on thread timing.
    """
    train, val, val_metrics = regression_data(traits, tr, va, scaler, columns)
    torch.manual_seed(head.seed)
    model = build_head(head, tr.x.shape[-1], len(columns), tr.dims)
    loss = build_loss(head.regression_loss, "regression", head, train[1])
    return model, train, val, loss, head, val_metrics


def regression_data(
    traits: list[str], tr: LabeledFeatures, va: LabeledFeatures, scaler: Standardizer, columns: list[int]
) -> tuple:
    """(train, val, val_metrics) of a head over the trait `columns`: the samples that have all of them."""
    keep, keep_v = (~np.isnan(d.traits[:, columns]).any(1) for d in (tr, va))
    y, yv = (scaler(torch.from_numpy(d.traits).float())[k][:, columns] for d, k in ((tr, keep), (va, keep_v)))
    names = [traits[j] for j in columns]

    def val_metrics(out: torch.Tensor) -> dict:  # on the standardised scale: ranks and correlations unchanged
        return regression_metrics(yv.numpy(), out.numpy(), names)

    return (tr.x[keep], y), (va.x[keep_v], yv), val_metrics


def train_regressors(
    heads: list[HeadConfig], traits: list[str], tr: LabeledFeatures, va: LabeledFeatures, scaler: Standardizer
) -> list[Fitted]:
    """Joint heads over all `traits` in one pass (`fit_many`), each initialised, drawing dropout and
    stopping as it would alone; they may differ in what `TRAIT_FREE` lists."""
    columns = list(range(len(traits)))
    train, val, val_metrics = regression_data(traits, tr, va, scaler, columns)
    models, losses, rng_states = [], [], []
    for h in heads:
        torch.manual_seed(h.seed)
        models.append(build_head(h, tr.x.shape[-1], len(columns), tr.dims))
        rng_states.append(torch.get_rng_state())  # where its dropout would draw from alone
        losses.append(build_loss(h.regression_loss, "regression", h, train[1]))
    return fit_many(models, train, val, losses, heads, val_metrics, rng_states=rng_states)
