"""Head training speed, in one run, against its baselines.

  speedup_vs_sklearn       our linear head (vidprobe.stages.train's trainer) against scikit-learn's
                           LogisticRegression on the same 20 000 x 1024 long-tailed features
                           (100 classes), with metric_delta_vs_sklearn = our val acc - theirs
  sweep_parallel_speedup   16 configs (4 lr x 4 weight decay) through `vidprobe sweep` on the same features:
                           one run after another (n_jobs=1, sweep.batch=false) against the default
                           (n_jobs = cores, heads batched: each worker trains its share as one model);
                           sweep_processes_speedup: n_jobs = cores without batching, for reference
  sweep_100_s              100 configs (5 lr x 4 weight decay x 5 head/loss variants: linear mse/huber/ccc, mlp
                           mse/ccc) of joint heads over 5 continuous traits, min(--samples, --sweep-samples) clips
                           x --dim, through `vidprobe sweep` as a user runs it: the product's defaults (200 epochs
                           at most, early stopping, the default batch size, batched heads, n_jobs = cores,
                           scikit-learn's baselines on), one seed; sweep_100_best its best config's spearman/mean
                           sweep_100_reference_*     the same sweep with today's stopping rule replaced by a fixed 30
                           epochs of patience (head.min_patience=30: every head waits 30 epochs, up to 200):
                           sweep_100_best_delta = reference best - default best (the defaults lose no more)
                           sweep_100_tuned_*         the tuned recipe beside it (10 epochs, batch 2048, patience 5,
                           no baselines), with its best metric
                           sweep_100_unbatched_s the defaults with sweep.batch=false, measured on a random
                           --sweep-baseline-configs of the 100 and scaled to 100 (sweep_100_unbatched_measured says so)
  stream_peak_rss_mb       `vidprobe train` (its own process) of a linear class head on --stream-rows x --dim float16
                           features (4 GB at 2,000,000 x 1024), bigger than head.memory_mb=--stream-memory-mb: they
                           stream from a float16 copy on disk; peak RSS of that process, and its seconds
  stream_metric_delta      on --stream-check-rows (fits in memory), val metrics streamed minus in memory (max |delta|)
  head_vs_backbone         samples/s of head training against samples/s of a VideoMAE-B forward
                           pass (random weights, 16x224x224) on this machine

Last line: one JSON object.   python benchmarks/heads.py [--samples 20000 --dim 1024 --classes 100
                                                          --sweep-samples 10000 --sweep-baseline-configs 20
                                                          --stream-rows 2000000 --stream-check-rows 200000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from vidprobe import layout  # noqa: E402
from vidprobe.config import load_config  # noqa: E402
from vidprobe.features.identity import feature_hash  # noqa: E402
from vidprobe.features.store import ShardWriter  # noqa: E402
from vidprobe.heads.config import HeadConfig  # noqa: E402
from vidprobe.heads.metrics import accuracy  # noqa: E402
from vidprobe.heads.models import build_head  # noqa: E402
from vidprobe.heads.trainer import Standardizer, fit, seed_everything  # noqa: E402
from vidprobe.stages import sweep, train  # noqa: E402

HEAD = dict(lr=3e-3, weight_decay=1e-4, epochs=10, batch_size=2048, patience=5)  # one recipe for every run here
TRAITS = [f"t{j}" for j in range(5)]
VARIANTS = [("linear", "mse"), ("linear", "huber"), ("linear", "ccc"), ("mlp", "mse"), ("mlp", "ccc")]
SWEEP_100 = (
    "{head.lr: [0.1, 0.03, 0.01, 0.003, 0.001], head.weight_decay: [0, 0.0001, 0.001, 0.01], variant: ["
    + ", ".join(f"{{name: {h}-{loss}, head.name: {h}, head.regression_loss: {loss}}}" for h, loss in VARIANTS)
    + "]}"
)


def long_tailed(n: int, dim: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian classes around random centres, class sizes falling off as 1/rank (Zipf)."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, classes + 1)
    y = rng.choice(classes, size=n, p=p / p.sum())
    centres = rng.normal(size=(classes, dim)).astype(np.float32) * 0.06
    x = centres[y] + rng.normal(size=(n, dim)).astype(np.float32)
    return x, y


def ours(x, y, xv, yv, classes: int) -> tuple[float, float, float]:
    cfg = HeadConfig(**HEAD)
    seed_everything(0)
    scale = Standardizer.fit(torch.from_numpy(x))
    xt, xvt = scale(torch.from_numpy(x)), scale(torch.from_numpy(xv))
    start = time.perf_counter()
    fitted = fit(
        build_head(cfg, x.shape[1], classes),
        (xt, torch.from_numpy(y)),
        (xvt, torch.from_numpy(yv)),
        F.cross_entropy,
        cfg,
    )
    seconds = time.perf_counter() - start
    with torch.no_grad():
        acc = accuracy(yv, fitted.model(xvt).argmax(1).numpy())
    return seconds, acc, len(x) * len(fitted.history) / seconds


def sklearn(x, y, xv, yv) -> tuple[float, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scale = StandardScaler().fit(x)
    start = time.perf_counter()
    clf = LogisticRegression(max_iter=200).fit(scale.transform(x), y)
    return time.perf_counter() - start, accuracy(yv, clf.predict(scale.transform(xv)))


def write_features(cfg, x: np.ndarray, **columns) -> None:
    """`x` as the config's feature set (video/pooled) with a manifest of 80/20 train/val rows and `columns`."""
    n = len(x)
    split = np.where(np.arange(n) % 10 < 8, "train", "val")
    manifest = pd.DataFrame(
        {
            "sample_id": [f"s{i}" for i in range(n)],
            "path": [f"s{i}.mp4" for i in range(n)],
            "split": split,
            **columns,
            "status": "ok",
        }
    )
    layout.manifest(cfg).parent.mkdir(parents=True)
    manifest.to_csv(layout.manifest(cfg), index=False)
    h, text = feature_hash(cfg.sampling, cfg.backbone, cfg.embed.storage_dtype)
    w = ShardWriter(layout.feature_set(cfg), 0, 1, {"config_hash": h, "config": text})
    w.append(list(manifest.sample_id), {"video/pooled": x})
    w.finish()


def sweep_speedup(tmp: Path, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Seconds for the same 16 configs: sequential, processes only, and the default (batched, in parallel)."""
    cfg = load_config(
        None,
        [
            f"paths.cache={tmp}",
            "dataset.name=bench",
            "sweep.seeds=[0]",
            "sweep.baselines=false",
            *[f"head.{k}={v}" for k, v in HEAD.items() if k != "lr"],
            "sweep.grid={head.lr: [0.03, 0.01, 0.003, 0.001], head.weight_decay: [0, 0.0001, 0.001, 0.01]}",
        ],
    )
    write_features(cfg, x, label=[f"c{c}" for c in y])
    times = {}
    cores = os.cpu_count() or 1
    for name, n_jobs, batch in (("sequential", 1, False), ("processes", cores, False), ("default", cores, True)):
        cfg.sweep.n_jobs, cfg.sweep.batch, cfg.sweep.name = n_jobs, batch, f"sweep-{name}"
        start = time.perf_counter()
        sweep.run(cfg)
        times[name] = time.perf_counter() - start
    return times


TUNED = ["head.epochs=10", "head.batch_size=2048", "head.patience=5", "sweep.baselines=false"]  # beside the defaults


def sweep_100(tmp: Path, n: int, dim: int, baseline_configs: int, reference: bool = True) -> dict:
    """Seconds and best metric of the 100-config traits sweep as `vidprobe sweep` runs it with the product's
    defaults; beside it the same with a fixed 30-epoch patience (the reference for the metric), the tuned recipe,
    and the defaults without batching (on `baseline_configs` of them drawn at random, scaled to 100)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    signal = x @ rng.normal(size=(dim, len(TRAITS))).astype(np.float32) / np.sqrt(dim)
    traits = signal + rng.normal(size=signal.shape).astype(np.float32)  # each trait half signal, half noise
    base = [
        f"paths.cache={tmp}",
        "dataset.name=traits",
        "task.label=null",
        f"task.traits={TRAITS}",
        "sweep.seeds=[0]",
        "sweep.metric=spearman/mean",
        f"sweep.grid={SWEEP_100}",
    ]
    write_features(load_config(None, base), x, **{t: traits[:, j] for j, t in enumerate(TRAITS)})

    def timed(name: str, *extra: str):
        cfg = load_config(None, [*base, f"sweep.name=sweep-100-{name}", *extra])
        start = time.perf_counter()
        table = sweep.run(cfg)
        heads = table[~table.config.str.startswith("baseline")]
        return time.perf_counter() - start, heads, len(sweep.combos_of(cfg))

    seconds, heads, configs = timed("defaults")
    best = float(heads["spearman/mean mean"].iloc[0])
    out = {
        "sweep_100_s": round(seconds, 2),
        "sweep_100_configs": configs,
        "sweep_100_clips": n,
        "sweep_100_diverged": int(heads.diverged.sum()),
        "sweep_100_best": round(best, 4),
        "sweep_100_best_config": heads.config.iloc[0],
    }
    tuned_s, tuned, _ = timed("tuned", *TUNED)
    out |= {
        "sweep_100_tuned_s": round(tuned_s, 2),
        "sweep_100_tuned_best": round(float(tuned["spearman/mean mean"].iloc[0]), 4),
    }
    if reference:
        ref_s, ref, _ = timed("reference", "head.min_patience=30")
        ref_best = float(ref["spearman/mean mean"].iloc[0])
        out |= {
            "sweep_100_reference_s": round(ref_s, 2),
            "sweep_100_reference_best": round(ref_best, 4),
            "sweep_100_best_delta": round(ref_best - best, 4),
            "sweep_100_speedup_vs_reference": float(f"{ref_s / seconds:.3g}"),
        }
    subset = baseline_configs if 0 < baseline_configs < configs else configs
    unbatched_s, _, _ = timed("unbatched", "sweep.batch=false", f"sweep.samples={subset}", "sweep.baselines=false")
    unbatched = unbatched_s * configs / subset
    out |= {
        "sweep_100_unbatched_s": round(unbatched, 2),
        "sweep_100_unbatched_measured": (
            "all configs"
            if subset == configs
            else f"{subset} of {configs} configs drawn at random, time x {configs / subset:.3g}"
        ),
        "sweep_100_speedup": float(f"{unbatched / seconds:.3g}"),
    }
    return out


STREAM_HEAD = ["head.epochs=2", "head.batch_size=4096", "head.lr=0.003", "head.patience=5"]


def teacher_features(cfg, n: int, dim: int, classes: int, chunk: int = 65536) -> None:
    """n x dim float16 features whose class is a fixed linear function of them (plus noise), written chunk by
    chunk as the config's feature set, with an 80/20 train/val manifest: never all in memory."""
    rng = np.random.default_rng(2)
    w = rng.normal(size=(dim, classes)).astype(np.float32) / np.sqrt(dim)
    h, text = feature_hash(cfg.sampling, cfg.backbone, cfg.embed.storage_dtype)
    labels = []
    with ShardWriter(layout.feature_set(cfg), 0, 1, {"config_hash": h, "config": text}, commit_every=chunk) as out:
        for a in range(0, n, chunk):
            x = rng.standard_normal(size=(min(chunk, n - a), dim), dtype=np.float32)
            labels += [f"c{c}" for c in (x @ w + 0.5 * rng.standard_normal((len(x), classes))).argmax(1)]
            out.append([f"s{i}" for i in range(a, a + len(x))], {"video/pooled": x.astype(np.float16)})
        out.finish()
    split = np.where(np.arange(n) % 10 < 8, "train", "val")
    layout.manifest(cfg).parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {
            "sample_id": [f"s{i}" for i in range(n)],
            "path": [f"s{i}.mp4" for i in range(n)],
            "split": split,
            "label": labels,
            "status": "ok",
        }
    ).to_csv(layout.manifest(cfg), index=False)


def stream(tmp: Path, rows: int, check_rows: int, dim: int, classes: int, memory_mb: int) -> dict:
    """Peak RSS and seconds of `vidprobe train` over `rows` streamed rows; metrics streamed vs in memory."""
    big = [f"paths.cache={tmp / 'stream'}", "dataset.name=big", *STREAM_HEAD, f"head.memory_mb={memory_mb}"]
    teacher_features(load_config(None, big), rows, dim, classes)
    probe = (
        "import resource, sys; from vidprobe.cli import main; code = main(sys.argv[1:]); "
        "print('peak_rss_kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(code)"
    )
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", probe, "train", *big],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    seconds = time.perf_counter() - start
    peak_mb = int(out.stdout.split("peak_rss_kb")[-1]) / 1024
    small = [f"paths.cache={tmp / 'check'}", "dataset.name=fits", *STREAM_HEAD, "head.epochs=5", "head.batch_size=1024"]
    teacher_features(load_config(None, small), check_rows, dim, classes)
    whole = train.run(load_config(None, small + ["run.name=in-memory"]))
    streamed = train.run(load_config(None, small + ["run.name=streamed", "head.memory_mb=1"]))
    delta = max(abs(streamed[k] - v) for k, v in whole.items() if isinstance(v, float))
    return {
        "stream_rows": rows,
        "stream_dim": dim,
        "stream_memory_mb": memory_mb,
        "stream_gb_float16": round(rows * dim * 2 / 2**30, 2),
        "stream_peak_rss_mb": round(peak_mb),
        "stream_train_s": round(seconds, 1),
        "stream_check_rows": check_rows,
        "stream_acc_in_memory": round(whole["acc"], 4),
        "stream_acc_streamed": round(streamed["acc"], 4),
        "stream_metric_delta": round(delta, 5),
    }


def backbone_rate() -> float:
    """Clips/s of a VideoMAE-B forward (random weights) on this machine, batch of 2."""
    from transformers import VideoMAEConfig, VideoMAEModel

    model = VideoMAEModel(VideoMAEConfig()).eval()
    x = torch.randn(2, 16, 3, 224, 224)
    with torch.no_grad():
        model(pixel_values=x)
        start = time.perf_counter()
        model(pixel_values=x)
    return 2 / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument(
        "--sweep-samples", type=int, default=10000, help="clips of the 100-config traits sweep (at most --samples)"
    )
    parser.add_argument(
        "--sweep-baseline-configs",
        type=int,
        default=20,
        help="configs of the unbatched 100-config sweep to time (scaled to 100); 0: all of them",
    )
    parser.add_argument("--stream-rows", type=int, default=2_000_000, help="rows of the streamed feature set")
    parser.add_argument(
        "--stream-check-rows",
        type=int,
        default=200_000,
        help="rows trained both in memory and streamed, to compare their metrics",
    )
    parser.add_argument("--stream-classes", type=int, default=10)
    parser.add_argument("--stream-memory-mb", type=int, default=1024, help="head.memory_mb of the streamed run")
    parser.add_argument("--skip-backbone", action="store_true")
    parser.add_argument(
        "--skip-reference", action="store_true", help="no 30-epoch-patience reference sweep (its best metric)"
    )
    args = parser.parse_args()

    x, y = long_tailed(args.samples, args.dim, args.classes)
    cut = int(0.8 * len(x))
    our_s, our_acc, head_rate = ours(x[:cut], y[:cut], x[cut:], y[cut:], args.classes)
    sk_s, sk_acc = sklearn(x[:cut], y[:cut], x[cut:], y[cut:])
    print(
        json.dumps(
            {
                "ours_s": round(our_s, 2),
                "ours_acc": round(our_acc, 4),
                "sklearn_s": round(sk_s, 2),
                "sklearn_acc": round(sk_acc, 4),
            }
        ),
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        sweeps = sweep_speedup(Path(tmp), x, y)
        hundred = sweep_100(
            Path(tmp),
            min(args.sweep_samples, args.samples),
            args.dim,
            args.sweep_baseline_configs,
            not args.skip_reference,
        )
        print(json.dumps(hundred), flush=True)
        streamed = stream(
            Path(tmp), args.stream_rows, args.stream_check_rows, args.dim, args.stream_classes, args.stream_memory_mb
        )
    print(json.dumps(streamed), flush=True)
    seq_s, par_s = sweeps["sequential"], sweeps["default"]
    backbone = None if args.skip_backbone else backbone_rate()
    print(
        json.dumps(
            {
                "samples": args.samples,
                "dim": args.dim,
                "classes": args.classes,
                "cores": os.cpu_count(),
                "ours_train_s": round(our_s, 3),
                "sklearn_train_s": round(sk_s, 3),
                "speedup_vs_sklearn": float(f"{sk_s / our_s:.3g}"),  # 3 significant digits: a tiny run's ratio is not 0
                "ours_acc": round(our_acc, 4),
                "sklearn_acc": round(sk_acc, 4),
                "metric_delta_vs_sklearn": round(our_acc - sk_acc, 4),
                "sweep_sequential_s": round(seq_s, 2),
                "sweep_parallel_s": round(par_s, 2),
                "sweep_parallel_speedup": float(f"{seq_s / par_s:.3g}"),
                "sweep_processes_s": round(sweeps["processes"], 2),
                "sweep_processes_speedup": float(f"{seq_s / sweeps['processes']:.3g}"),
                **hundred,
                **streamed,
                "head_train_samples_per_s": round(head_rate, 1),
                "backbone_clips_per_s": None if backbone is None else round(backbone, 3),
                "head_vs_backbone_throughput": None if backbone is None else round(head_rate / backbone, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
