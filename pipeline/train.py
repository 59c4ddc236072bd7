"""`vidprobe train`: heads on cached features, one per target kind (class, multi-label classes, numeric traits)."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from joblib import Parallel, delayed

from features.store import FeatureSet, StoreError
from heads.metrics import classification_metrics, multilabel_metrics, per_class_ap, regression_metrics
from heads.losses import balanced_multilabel_bce, build_loss
from heads.models import SEQUENCE_HEADS, build_head, prompt_linear
from heads.trainer import Fitted, Standardizer, fit, fit_many, retrain_classifier, seed_everything
from pipeline.config import Config, ConfigError, dump_config, with_overrides
from pipeline.embed import feature_hash
from pipeline.index import read_manifest


@dataclass
class SplitData:
    ids: list[str]
    x: torch.Tensor  # (N, D) features
    labels: list[str] | None  # class names, when task.label is set
    multi: list[list[str]] | None  # class names per sample, when task.multilabel is set
    traits: np.ndarray | None  # (N, n_traits), NaN where a value is missing
    dims: list[int] | None = None  # fused inputs: each modality's width; x is [x_1 | ... | x_M | masks]


def open_set(cfg: Config, name: str, key: str) -> FeatureSet:
    """Another feature set of this dataset, by name; a missing one is a config error under `key`."""
    try:
        return FeatureSet(cfg.feature_dir().parent / name)
    except StoreError as err:
        raise ConfigError(f"{key}: {err}") from None


def feature_key(cfg: Config) -> tuple[str, str]:
    """head.features as (feature set name, key): "<feature_set>:<key>" names another set of the dataset
    (e.g. whisper-tiny.en:audio/pooled); a bare key is this config's own video feature set."""
    name, _, key = cfg.head.features.rpartition(":")
    return name or cfg.feature_dir().name, key


def open_features(cfg: Config) -> tuple[pd.DataFrame, FeatureSet]:
    """The manifest rows that have features, and the feature set: this config's own is checked against
    it (config hash); another set named in head.features is recorded by its hash in the run."""
    manifest = read_manifest(cfg)
    name, _ = feature_key(cfg)
    fs = open_set(cfg, name, "head.features")
    if name == cfg.feature_dir().name:
        fs.require_hash(*feature_hash(cfg))
    targets = {"task.label": [cfg.task.label], "task.multilabel": [cfg.task.multilabel], "task.traits": cfg.task.traits}
    for key, col in ((k, c) for k, cols in targets.items() for c in cols if c):
        if col not in manifest.columns:
            raise ConfigError(f"{key}: the manifest has no column {col!r}; it has {list(manifest.columns)}")
    have = manifest.sample_id.isin(set(fs.ids))
    missing = manifest[(manifest.status == "ok") & ~have]
    if len(missing):
        print(f"warning: {len(missing)} indexed samples have no features (failed at embed), e.g. {list(missing.sample_id[:3])}")
    return manifest[have], fs


def pooled(x: np.ndarray, key: str) -> torch.Tensor:
    x = torch.from_numpy(x).float()
    if x.ndim > 2 and key.endswith("pooled"):
        x = x.flatten(1, -2).mean(1)  # temporal views and crops: averaged, as multi-view testing does
    return x


def check_finite(x: torch.Tensor, ids: list[str], split: str, key: str) -> None:
    bad = ~torch.isfinite(x.flatten(1)).all(1)
    if bad.any():
        raise ConfigError(f"{int(bad.sum())} samples of {split} have NaN or inf in {key}, e.g. "
                          f"{[ids[i] for i in torch.nonzero(bad).flatten()[:3].tolist()]}; re-embed them "
                          f"(`vidprobe cache verify` lists the shards)")


def fused_inputs(cfg: Config) -> list[tuple[str, FeatureSet, str]]:
    """head.fuse as (name, feature set, key): "<feature_set>:<key>" in this dataset's cache, or a bare key
    of this config's own feature set."""
    out = []
    for spec in cfg.head.fuse:
        name, _, key = spec.rpartition(":")
        out.append((spec, open_set(cfg, name or cfg.feature_dir().name, f"head.fuse: {spec!r}"), key))
    return out


def modality(fs: FeatureSet, key: str, ids: list[str], split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(values with NaN rows where missing, presence mask) of one fused input.

    A sample is missing when its id is not in the set, or when the set says so in `<modality>/present`
    (e.g. `audio/present` is false for a video without an audio track).
    """
    have = [i for i in ids if i in fs.rows]
    rows = {sid: r for r, sid in enumerate(have)}
    x = pooled(fs.get(key, have), key)
    present = torch.ones(len(have), dtype=torch.bool)
    flag = f"{key.split('/')[0]}/present"
    if flag in fs.keys:
        present = torch.from_numpy(fs.get(flag, have).astype(bool))
    check_finite(x[present], [s for s, p in zip(have, present) if p], split, f"{fs.dir.name}:{key}")
    out = torch.full((len(ids), *x.shape[1:]), float("nan"))
    mask = torch.zeros(len(ids))
    for i, sid in enumerate(ids):
        r = rows.get(sid)
        if r is not None and present[r]:
            out[i], mask[i] = x[r], 1.0
    return out, mask


def load_split(cfg: Config, manifest: pd.DataFrame, fs: FeatureSet, split: str) -> SplitData:
    rows = manifest[manifest.split == split]
    if rows.empty:
        raise ConfigError(f"no samples with features in split {split!r}; splits present: {sorted(manifest.split.unique())}")
    ids = list(rows.sample_id)
    _, key = feature_key(cfg)
    if f"{key.split('/')[0]}/present" in fs.keys:  # e.g. audio alone: rows without audio are missing values
        x, _ = modality(fs, key, ids, split)
    else:
        x = pooled(fs.get(key, ids), key)
        check_finite(x, ids, split, cfg.head.features)
    if cfg.head.name == "coop":
        if x.ndim not in (2, 3):
            raise ConfigError(f"head.features: coop takes CLIP frames (N, T, D) or pooled (N, D) features; "
                              f"{cfg.head.features!r} has shape {tuple(x.shape[1:])} per sample")
    elif cfg.head.name in SEQUENCE_HEADS:
        if x.ndim != 3:
            raise ConfigError(f"head.features: the {cfg.head.name} head pools over time and needs (N, T, D) features "
                              f"such as video/temporal; {cfg.head.features!r} has shape {tuple(x.shape[1:])} per sample")
    elif x.ndim != 2:
        raise ConfigError(f"head.features: {cfg.head.features!r} has shape {tuple(x.shape[1:])} per sample; "
                          f"the {cfg.head.name} head needs pooled (N, D) features such as video/pooled")
    dims = None
    if cfg.head.fuse:
        if cfg.head.name in SEQUENCE_HEADS or cfg.head.name in ("zero-shot", "coop") or cfg.head.init == "prompts":
            raise ConfigError(f"head.fuse: fusion combines pooled features with linear or mlp heads, not {cfg.head.name!r} "
                              f"(head.init={cfg.head.init})")
        inputs = fused_inputs(cfg)  # each set's shards opened once
        parts = [modality(other, key, ids, split) for _, other, key in inputs]
        flat = [spec for (spec, _, _), (values, _) in zip(inputs, parts) if values.ndim != 2]
        if x.ndim != 2 or flat:
            raise ConfigError(f"head.fuse: fusion takes pooled (N, D) features; {flat or cfg.head.features} are not")
        dims = [x.shape[1]] + [p[0].shape[1] for p in parts]
        masks = torch.stack([torch.ones(len(ids))] + [p[1] for p in parts], dim=1)
        x = torch.cat([x] + [p[0] for p in parts] + [masks], dim=1)
    labels = list(rows[cfg.task.label].astype(str)) if cfg.task.label else None
    traits = rows[cfg.task.traits].to_numpy(dtype=np.float64, copy=True) if cfg.task.traits else None
    multi = None
    if cfg.task.multilabel:
        multi = [list(filter(None, str(v).split("|"))) if isinstance(v, str) else [] for v in rows[cfg.task.multilabel]]
    return SplitData(ids, x, labels, multi, traits, dims)


def class_prompts(cfg: Config, classes: list[str], dim: int) -> torch.Tensor:
    """(classes, D) class-prompt embeddings from the feature set named by head.prompts (ids = class names)."""
    if not cfg.head.prompts:
        raise ConfigError(f"head.prompts: the {cfg.head.name} head (head.init={cfg.head.init}) needs a feature set of "
                          "class-prompt embeddings, e.g. head.prompts=clip-prompts:text/pooled")
    name, _, key = cfg.head.prompts.partition(":")
    fs = open_set(cfg, name, "head.prompts")
    missing = [c for c in classes if c not in fs.rows]
    if missing:
        raise ConfigError(f"head.prompts: {fs.dir} has no prompt for {len(missing)} classes, e.g. {missing[:3]}; "
                          f"it has {fs.ids[:5]}")
    prompts = torch.from_numpy(fs.get(key or "text/pooled", classes)).float()
    if prompts.shape[1] != dim:
        raise ConfigError(f"head.prompts: prompt embeddings are {prompts.shape[1]}-d but {cfg.head.features} is {dim}-d; "
                          "use the text side of the same model that embedded the videos")
    return prompts


def train_classifiers(cfgs: list[Config], tr: SplitData, va: SplitData, classes: list[str]) -> list[Fitted]:
    """The class head of each config; several (differing only in lr / weight decay) train in one pass."""
    cfg = cfgs[0]
    y = torch.tensor([classes.index(c) for c in tr.labels])
    seen = np.array([c in classes for c in va.labels])
    if not seen.all():
        print(f"warning: {int((~seen).sum())} validation samples have classes absent from train "
              f"({sorted(set(np.array(va.labels)[~seen]))}); early stopping ignores them, metrics count them wrong")
    yv = torch.tensor([classes.index(c) for c in np.array(va.labels)[seen]], dtype=torch.long)
    xv = va.x[torch.from_numpy(seen)]
    seed_everything(cfg.head.seed)

    def val_metrics(logits: torch.Tensor) -> dict:
        return classification_metrics(yv.numpy(), logits.argmax(1).numpy(), len(classes), logits.numpy())

    if cfg.head.name == "zero-shot" or cfg.head.init == "prompts":
        if cfg.head.name not in ("zero-shot", "linear") or cfg.task.mode == "per_target":
            raise ConfigError(f"head.init=prompts: only a joint linear head starts from class prompts, not "
                              f"{cfg.head.name!r} in task.mode={cfg.task.mode}")
        model = prompt_linear(class_prompts(cfg, classes, tr.x.shape[-1]), cfg.head.logit_scale)
        if cfg.head.name == "zero-shot":  # nothing to train: the prompts are the classifier
            with torch.no_grad():
                return [Fitted(model.eval(), 0, [{"epoch": 0, **val_metrics(model(xv))}])]
        models = [model]
    elif cfg.head.name == "coop":
        if cfg.task.mode == "per_target":
            raise ConfigError("head.name=coop learns one context for all classes: use task.mode=joint")
        models = [build_coop(cfg, classes)]
    elif cfg.task.mode == "per_target":
        return [train_one_vs_rest(cfg, tr.x, y, xv, yv, len(classes), tr.dims)]
    else:
        models = []
        for c in cfgs:  # each initialised as it would be alone
            seed_everything(c.head.seed)
            models.append(build_head(c.head, tr.x.shape[-1], len(classes), tr.dims))
    loss = build_loss(cfg.head.loss, "class", cfg.head, y)
    weights = None
    if cfg.head.sampler == "balanced":
        weights = (1.0 / torch.bincount(y).float())[y]
    fitted = fit_many(models, (tr.x, y), (xv, yv), loss, [c.head for c in cfgs], val_metrics, weights)
    if cfg.head.stage2_epochs:  # weight balancing: the classifier alone again, classes balanced by effective numbers
        balanced = build_loss(cfg.head.loss, "class", replace(cfg.head, class_weights="effective"), y)
        fitted = [retrain_classifier(f, (tr.x, y), (xv, yv), balanced, c.head, val_metrics) for f, c in zip(fitted, cfgs)]
    return fitted


def train_one_vs_rest(cfg: Config, x, y, xv, yv, n_classes: int, dims) -> Fitted:
    """task.mode=per_target for a class: an independent binary head per class (BCE), in threads."""
    model = build_head(cfg.head, x.shape[-1], n_classes, dims, one_vs_rest=True)  # seeded, in order
    binary = replace(cfg.head, monitor="val_loss")  # each head stops on its own validation loss
    jobs = []
    for k, head in enumerate(model.heads):
        yk, yvk = (y == k).float()[:, None], (yv == k).float()[:, None]
        jobs.append((head, (x, yk), (xv, yvk), build_loss(cfg.head.multilabel_loss, "multilabel", cfg.head, yk), binary))
    fitted = Parallel(n_jobs=cfg.task.n_jobs, prefer="threads")(delayed(fit)(*job) for job in jobs)
    with torch.no_grad():
        logits = model.eval()(xv)
    history = [{"class": k, "best_epoch": f.best_epoch, "epochs": len(f.history),
                "val_loss": f.history[f.best_epoch - 1]["val_loss"]} for k, f in enumerate(fitted)]
    best = max(f.best_epoch for f in fitted)
    metrics = classification_metrics(yv.numpy(), logits.argmax(1).numpy(), n_classes, logits.numpy())
    return Fitted(model, best, history + [{"class": "all", **metrics}])


def few_shot(data: SplitData, k: int | None, seed: int) -> SplitData:
    """At most `k` samples per class, drawn with `seed` (the same draw for every head of a run)."""
    if not k:
        return data
    if data.labels is None:
        raise ConfigError("head.k_train/k_val: few-shot sampling needs task.label (a class per sample)")
    rng = np.random.default_rng(seed)
    labels = np.array(data.labels)
    keep = np.sort(np.concatenate([rng.permutation(np.nonzero(labels == c)[0])[:k] for c in np.unique(labels)]))
    pick = torch.from_numpy(keep)
    return SplitData([data.ids[i] for i in keep], data.x[pick], list(labels[keep]),
                     None if data.multi is None else [data.multi[i] for i in keep],
                     None if data.traits is None else data.traits[keep])


def multi_hot(multi: list[list[str]], classes: list[str]) -> torch.Tensor:
    index = {c: j for j, c in enumerate(classes)}
    y = torch.zeros(len(multi), len(classes))
    for i, names in enumerate(multi):
        y[i, [index[n] for n in names if n in index]] = 1.0
    return y


def class_info(cfg: Config, tr: SplitData) -> dict:
    """The class list and long-tail segments saved by `index` (else the classes seen in train)."""
    path = cfg.manifest_path().parent / "classes.json"
    if path.is_file():
        return json.loads(path.read_text())
    return {"classes": sorted({n for names in tr.multi for n in names}), "segment": {}}


def train_multilabel(cfg: Config, tr: SplitData, va: SplitData, info: dict):
    classes = info["classes"]
    y, yv = multi_hot(tr.multi, classes), multi_hot(va.multi, classes)
    seed_everything(cfg.head.seed)
    model = build_head(cfg.head, tr.x.shape[-1], len(classes), tr.dims)

    def val_metrics(logits: torch.Tensor) -> dict:
        return {"mAP": multilabel_metrics(yv.numpy(), logits.numpy(), classes)["mAP"]}

    loss = build_loss(cfg.head.multilabel_loss, "multilabel", cfg.head, y)
    fitted = fit(model, (tr.x, y), (va.x, yv), loss, cfg.head, val_metrics)
    if cfg.head.stage2_epochs:  # weight balancing: the classifier alone again, positives balanced by effective numbers
        fitted = retrain_classifier(fitted, (tr.x, y), (va.x, yv), balanced_multilabel_bce(cfg.head, y), cfg.head,
                                    val_metrics)
    return fitted


def regressor_job(cfg: Config, tr: SplitData, va: SplitData, scaler: Standardizer, columns: list[int]) -> tuple:
    """The arguments of `fit` for one head over the trait `columns`, on the samples that have all of them.

    Built in the calling thread, in order, so seeded initialisation does not depend on thread timing.
    """
    keep, keep_v = (~np.isnan(d.traits[:, columns]).any(1) for d in (tr, va))
    y, yv = (scaler(torch.from_numpy(d.traits).float())[k][:, columns] for d, k in ((tr, keep), (va, keep_v)))
    torch.manual_seed(cfg.head.seed)
    model = build_head(cfg.head, tr.x.shape[-1], len(columns), tr.dims)
    traits = [cfg.task.traits[j] for j in columns]

    def val_metrics(out: torch.Tensor) -> dict:  # on the standardised scale: ranks and correlations unchanged
        return regression_metrics(yv.numpy(), out.numpy(), traits)

    loss = build_loss(cfg.head.regression_loss, "regression", cfg.head, y)
    return model, (tr.x[keep], y), (va.x[keep_v], yv), loss, cfg.head, val_metrics


def predict(bundle: dict, cfg: Config, data: SplitData, tables: dict | None = None) -> tuple[pd.DataFrame, dict]:
    """Predictions and metrics of a trained bundle (see `run`) on one split; `tables` gets the per-class AP."""
    tables = {} if tables is None else tables
    x = Standardizer(bundle["feat_mean"], bundle["feat_std"], bundle.get("feat_l2", False))(data.x)
    dims = bundle.get("dims")
    pred = pd.DataFrame({"sample_id": data.ids})
    metrics: dict = {}
    with torch.no_grad():
        if "label_head" in bundle:
            classes = bundle["classes"]
            head = _load_head(cfg, bundle["label_head"], x.shape[-1], len(classes), dims, bundle.get("one_vs_rest", False),
                              classes)
            probs = head(x).softmax(1)
            y_pred = probs.argmax(1).numpy()
            unknown = sorted(set(data.labels) - set(classes))
            if unknown:
                print(f"warning: classes {unknown} were not seen in training; their samples count as wrong")
            y_true = np.array([classes.index(c) if c in classes else -1 for c in data.labels])
            pred["label"], pred["pred"], pred["confidence"] = data.labels, [classes[i] for i in y_pred], probs.max(1).values.numpy()
            metrics.update(classification_metrics(y_true, y_pred, len(classes), probs.numpy()))
            onehot = (y_true[:, None] == np.arange(len(classes))).astype(float)
            tables["label"] = ap_table(classes, onehot, probs.numpy())
        if "multilabel_head" in bundle:
            classes = bundle["ml_classes"]
            head = _load_head(cfg, bundle["multilabel_head"], x.shape[-1], len(classes), dims)
            scores = head(x).sigmoid().numpy()
            pred["labels"] = ["|".join(m) for m in data.multi]
            pred["top"] = [classes[j] for j in scores.argmax(1)]
            segment = dict(zip(bundle["ml_segment_classes"], bundle["ml_segments"]))
            y_true = multi_hot(data.multi, classes).numpy()
            metrics.update(multilabel_metrics(y_true, scores, classes, segment))
            tables["multilabel"] = ap_table(classes, y_true, scores, segment)
        if "traits_heads" in bundle:
            traits = bundle["traits"]
            out = torch.zeros(len(x), len(traits))
            for columns, state in zip(bundle["trait_groups"], bundle["traits_heads"]):
                out[:, columns] = _load_head(cfg, state, x.shape[-1], len(columns), dims)(x)
            y_hat = (out * bundle["trait_std"] + bundle["trait_mean"]).numpy()
            for j, t in enumerate(traits):
                pred[t], pred[f"pred/{t}"] = data.traits[:, j], y_hat[:, j]
            metrics.update(regression_metrics(data.traits, y_hat, traits))
    return pred, metrics


def ap_table(classes: list[str], y_true: np.ndarray, scores: np.ndarray, segment: dict | None = None) -> pd.DataFrame:
    """One row per class: positives in this split, AP (empty when it has none), long-tail segment."""
    ap = per_class_ap(y_true, scores, classes)
    return pd.DataFrame({"class": classes, "positives": y_true.sum(0).astype(int),
                         "ap": [ap.get(c, np.nan) for c in classes],
                         "segment": [(segment or {}).get(c, "") for c in classes]})


def write_tables(out: Path, tables: dict) -> None:
    """per_class_ap[-multilabel].csv: what `dvc plots` draws as a bar chart per class."""
    for name, table in tables.items():
        table.to_csv(out / ("per_class_ap.csv" if name == "label" else f"per_class_ap-{name}.csv"),
                     index=False, float_format="%.6g")


def input_hashes(cfg: Config) -> dict[str, str]:
    """Config hash of every feature set the heads read besides this config's own (fused, or named in head.features)."""
    hashes = {spec: other.config_hash for spec, other, _ in fused_inputs(cfg)}
    name, _ = feature_key(cfg)
    if name != cfg.feature_dir().name:
        hashes[cfg.head.features] = open_set(cfg, name, "head.features").config_hash
    return hashes


def check_inputs(bundle: dict, cfg: Config) -> None:
    """The fused feature sets are the ones the heads were trained on (same config hash)."""
    now = input_hashes(cfg)
    for spec, trained in bundle.get("inputs", {}).items():
        if now.get(spec) != trained:
            raise ConfigError(f"{spec!r} now has config hash {now.get(spec)}, the heads were trained on "
                              f"{trained}; re-run `vidprobe train`")


def build_coop(cfg: Config, classes: list[str]) -> torch.nn.Module:
    """Learnable prompt context through the CLIP text tower of text.model (or the CLIP backbone's own)."""
    from transformers import AutoTokenizer, CLIPModel

    from features.backbones import load_pretrained, save_tiny_clip
    from heads.coop import CoOp
    from pipeline.text import readable, text_model

    model, _ = text_model(with_overrides(cfg, {"text.encoder": "clip"}))
    with tempfile.TemporaryDirectory() as tmp:
        source = model or str(save_tiny_clip(Path(tmp), cfg.backbone.seed))
        clip, _ = load_pretrained(CLIPModel, source, "CLIP")
        tokenizer = AutoTokenizer.from_pretrained(source)
    return CoOp(clip, tokenizer, [readable(c) for c in classes], cfg.head.coop_init, cfg.head.coop_pooling)


def _load_head(cfg: Config, state: dict, in_dim: int, out_dim: int, dims=None, one_vs_rest=False,
               classes: list[str] | None = None) -> torch.nn.Module:
    if cfg.head.name == "coop":
        head = build_coop(cfg, classes)
    else:
        head = build_head(cfg.head, in_dim, out_dim, dims, one_vs_rest)
    head.load_state_dict(state)
    return head.eval()


def write_history(path: Path, history: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(history).to_csv(path, sep="\t", index=False, float_format="%.6g")


def run(cfg: Config) -> dict:
    """Train the heads of one config; write its run folder; return the validation metrics."""
    return run_many([cfg])[0]


def run_many(cfgs: list[Config]) -> list[dict]:
    """Several runs that differ only in `head.lr`, `head.weight_decay` and `run.name` (see `can_batch`):
    the features are loaded once and the class heads train in one pass (`fit_many`); each config gets
    the same run folder it would get alone."""
    cfg = cfgs[0]
    if not (cfg.task.label or cfg.task.multilabel or cfg.task.traits):
        raise ConfigError("task: nothing to train: set task.label (a class column), task.multilabel (a '|'-joined "
                          "class column) and/or task.traits (numeric columns)")
    if cfg.head.name in ("zero-shot", "coop") and (cfg.task.traits or cfg.task.multilabel or not cfg.task.label):
        raise ConfigError(f"head.name={cfg.head.name} classifies task.label from class prompts; set task.traits=[] "
                          "and task.multilabel=null, or train those with another head")
    if len(cfgs) > 1 and not all(can_batch(c) and same_but_optimiser(c, cfg) for c in cfgs):
        raise ValueError("run_many: the configs must be batchable and differ only in head.lr / head.weight_decay")
    manifest, fs = open_features(cfg)
    tr, va = load_split(cfg, manifest, fs, "train"), load_split(cfg, manifest, fs, "val")
    if cfg.head.k_train or cfg.head.k_val:
        tr, va = few_shot(tr, cfg.head.k_train, cfg.head.seed), few_shot(va, cfg.head.k_val, cfg.head.seed)
    prompted = cfg.head.name in ("zero-shot", "coop") or cfg.head.init == "prompts"
    if prompted and cfg.head.normalize != "l2":
        print("note: class-prompt heads compare directions: features are L2-normalised (head.normalize=l2)")
    feat = Standardizer.fit(tr.x, passthrough=len(tr.dims or []), l2=prompted or cfg.head.normalize == "l2")
    tr_s, va_s = replace(tr, x=feat(tr.x)), replace(va, x=feat(va.x))
    for c in cfgs:
        c.run_dir().mkdir(parents=True, exist_ok=True)
    base = {"feat_mean": feat.mean, "feat_std": feat.std, "feat_l2": feat.l2, "dims": tr.dims,
            "inputs": input_hashes(cfg)}
    bundles = [dict(base) for _ in cfgs]
    if cfg.task.label:
        classes = sorted(set(tr.labels))
        for c, bundle, fitted in zip(cfgs, bundles, train_classifiers(cfgs, tr_s, va_s, classes)):
            bundle.update(classes=classes, label_head=fitted.model.state_dict(),
                          one_vs_rest=cfg.task.mode == "per_target" and not prompted)
            write_history(c.run_dir() / "history" / "label.tsv", fitted.history)
            print(f"label head: {len(classes)} classes, best epoch {fitted.best_epoch}/{len(fitted.history)}")
    bundle, out = bundles[0], cfg.run_dir()
    if cfg.task.multilabel:
        info = class_info(cfg, tr)
        fitted = train_multilabel(cfg, tr_s, va_s, info)
        segment = info.get("segment", {})
        bundle.update(ml_classes=info["classes"], multilabel_head=fitted.model.state_dict(),
                      ml_segment_classes=list(segment), ml_segments=list(segment.values()))
        write_history(out / "history" / "multilabel.tsv", fitted.history)
        print(f"multilabel head: {len(info['classes'])} classes, best epoch {fitted.best_epoch}/{len(fitted.history)}")
    if cfg.task.traits:
        # per trait, over the samples that have it
        scaler = Standardizer(torch.tensor(np.nanmean(tr.traits, 0)).float(),
                              torch.tensor(np.nanstd(tr.traits, 0)).float().clamp_min(1e-6))
        n = len(cfg.task.traits)
        groups = [[j] for j in range(n)] if cfg.task.mode == "per_target" else [list(range(n))]
        jobs = [regressor_job(cfg, tr_s, va_s, scaler, cols) for cols in groups]
        fitted = Parallel(n_jobs=cfg.task.n_jobs if len(groups) > 1 else 1, prefer="threads")(
            delayed(fit)(*job) for job in jobs)
        bundle.update(traits=list(cfg.task.traits), trait_groups=groups,
                      traits_heads=[f.model.state_dict() for f in fitted], trait_mean=scaler.mean, trait_std=scaler.std)
        for cols, f in zip(groups, fitted):
            name = "traits" if len(groups) == 1 else f"trait-{cfg.task.traits[cols[0]]}"
            write_history(out / "history" / f"{name}.tsv", f.history)
            print(f"{name} head: best epoch {f.best_epoch}/{len(f.history)}")
    return [finish(c, b, va, len(tr.ids)) for c, b in zip(cfgs, bundles)]


def can_batch(cfg: Config) -> bool:
    """Heads that `run_many` trains in one pass: a joint linear class head from random weights, nothing else."""
    return bool(cfg.task.label and not cfg.task.multilabel and not cfg.task.traits and cfg.task.mode == "joint"
                and cfg.head.name == "linear" and cfg.head.init == "random")


def same_but_optimiser(a: Config, b: Config) -> bool:
    strip = lambda c: with_overrides(c, {"head.lr": 0.0, "head.weight_decay": 0.0, "run.name": "-"}).to_dict()  # noqa: E731
    return strip(a) == strip(b)


def finish(cfg: Config, bundle: dict, va: SplitData, n_train: int) -> dict:
    """Weights, validation predictions, per-class AP, metrics and the resolved config into the run folder."""
    out = cfg.run_dir()
    torch.save(bundle, out / "heads.pt")
    tables: dict = {}
    pred, metrics = predict(bundle, cfg, va, tables)
    pred.to_csv(out / "predictions.csv", index=False)
    write_tables(out, tables)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    dump_config(cfg, out / "config.yaml")
    print_metrics(f"validation ({len(va.ids)} samples, trained on {n_train})", metrics)
    return metrics


def load_bundle(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"no trained heads at {path}: run `vidprobe train` with the same config first")
    return torch.load(path, weights_only=True)


def print_metrics(title: str, metrics: dict) -> None:
    print(title)
    for key, value in metrics.items():
        print(f"  {key:<22} {value:.4f}")
