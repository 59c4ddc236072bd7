"""The fast trainer: whole feature matrices as tensors, AdamW, early stopping on validation loss."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn
from vidprobe.features.devices import resolve_device
from vidprobe.heads.config import HeadConfig
from vidprobe.heads.errors import HeadConfigError
from vidprobe.heads.metrics import lower_is_better
from vidprobe.heads.schedules import lr_at
from vidprobe.heads.stack import StackedHeads
from vidprobe.heads.stream import DiskRows, forward_chunks

STATS_CHUNK_ROWS = 4096  # rows a Standardizer sums at a time (4096 x 1024 float64: 32 MB)


@dataclass
class Standardizer:
    """Per-column mean/std from the training rows only, applied to every split.

    NaN marks a missing value (a modality absent for a sample): it is left out of the statistics and
    becomes 0, the training mean, once scaled. The last `passthrough` columns (modality masks) stay
    as they are. With `l2`, rows are scaled to unit length instead (cosine-similarity heads).
    """

    mean: torch.Tensor
    std: torch.Tensor
    l2: bool = False

    @classmethod
    def fit(cls, x: torch.Tensor | DiskRows, passthrough: int = 0, l2: bool = False) -> Standardizer:
        if l2:
            return cls(torch.zeros(x.shape[-1]), torch.ones(x.shape[-1]), l2=True)
        # sums in float64, a chunk of rows at a time: no copy of x is made, and a set read from disk is read once
        chunks = x.chunks() if isinstance(x, DiskRows) else x.flatten(0, -2).split(STATS_CHUNK_ROWS)
        count, total, squares = (torch.zeros(x.shape[-1], dtype=torch.float64) for _ in range(3))
        for chunk in chunks:
            rows = chunk.flatten(0, -2).double()  # (N, D) or (N, T, D): statistics per feature, over samples and time
            count += (~rows.isnan()).sum(0)
            rows = rows.nan_to_num_(0.0)
            total += rows.sum(0)
            squares += rows.square_().sum(0)
        mean = total / count  # NaN where a column has no value at all
        std = (squares / count - mean.square()).clamp_min(0).sqrt().nan_to_num(1.0).float().clamp_min(1e-6)
        mean = mean.nan_to_num(0.0).float()
        if passthrough:
            mean[-passthrough:], std[-passthrough:] = 0.0, 1.0
        return cls(mean, std)

    def __call__(self, x: torch.Tensor | DiskRows) -> torch.Tensor | DiskRows:
        if isinstance(x, DiskRows):
            return x.map(self)  # applied to each chunk as it is read
        z = (x - self.mean).div_(self.std)  # one new tensor, worked on in place
        z = z.masked_fill_(torch.isnan(z), 0.0)
        return nn.functional.normalize(z, dim=-1) if self.l2 else z


@dataclass
class Fitted:
    model: nn.Module
    best_epoch: int
    history: list[dict] = field(default_factory=list)


def fit(
    model: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    cfg: HeadConfig,
    val_metrics: Callable[[torch.Tensor], dict] | None = None,
    sample_weights: torch.Tensor | None = None,
) -> Fitted:
    """Train on tensors in shuffled minibatches; keep the weights of the best `cfg.monitor` on validation."""
    return fit_many([model], train, val, loss_fn, [cfg], val_metrics, sample_weights)[0]


def fit_many(
    models: list[nn.Module],
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | list[Callable],
    cfgs: list[HeadConfig],
    val_metrics: Callable[[torch.Tensor], dict] | None = None,
    sample_weights: torch.Tensor | None = None,
    rng_states: list[torch.Tensor] | None = None,
) -> list[Fitted]:
    """Train several heads on the same minibatches at once, each with its own learning rate, weight decay,
    schedule length, patience and early stopping (one AdamW parameter group per head; plain linear heads side by
    side in one `LinearStack`, whose AdamW keeps a learning rate and weight decay per head), and, given a list,
    its own loss. Each head's loss is backpropagated on its own, so a head that diverges (NaN) reaches no
    other head's gradient. The batches come from the first config's seed; `rng_states` (the global RNG
    state each head would start from alone) give every head its own dropout draws: each trains as it
    would alone.

    This is how a sweep over learning rates, weight decays, heads and losses costs one pass over the data.
    """
    (x, y), (xv, yv) = train, val
    cfg0 = cfgs[0]
    losses_fn = loss_fn if isinstance(loss_fn, list) else [loss_fn] * len(models)
    device = resolve_device(cfg0.device)  # heads, data and the losses' class weights there (on the CPU: as they
    models = [m.to(device) for m in models]  # are); rows streamed from disk go per batch
    x, y, xv, yv = (t.to(device) if isinstance(t, torch.Tensor) else t for t in (x, y, xv, yv))
    for fn in set(losses_fn):
        move_tensors(fn, device)
    gen = torch.Generator().manual_seed(cfg0.seed)
    stacked = StackedHeads(models, cfgs, tuple(x.shape))  # plain linear heads: one matmul for all of them
    own = [k for k in range(len(models)) if k not in stacked]  # the others: an AdamW parameter group each
    params = [{"params": models[k].parameters(), "lr": cfgs[k].lr, "weight_decay": cfgs[k].weight_decay} for k in own]
    opt = torch.optim.AdamW(params, foreach=True) if own else None  # foreach on the CPU too: same values, faster
    groups = dict(zip(own, opt.param_groups)) if opt else {}  # a stopped head's group leaves the optimizer's list
    sign = 1.0 if lower_is_better(cfg0.monitor) else -1.0
    steps = math.ceil(len(x) / cfg0.batch_size)  # optimizer steps an epoch

    def snapshot(k: int) -> dict:  # head k's weights now, on the CPU
        return stacked.state(k) if k in stacked else cpu_copy(models[k])

    best = [(float("inf"), 0, snapshot(k)) for k in range(len(models))]
    histories: list[list[dict]] = [[] for _ in models]
    active = list(range(len(models)))
    for epoch in range(1, max(c.epochs for c in cfgs) + 1):
        active = [k for k in active if epoch <= cfgs[k].epochs]
        if not active:
            break
        if opt:
            opt.param_groups = [groups[k] for k in active if k in groups]  # AdamW's state is per parameter
        for k in groups.keys() & active:
            groups[k]["lr"] = lr_at(cfgs[k], epoch)
        stacked.keep(active)
        for fn in set(losses_fn):
            if hasattr(fn, "epoch"):
                fn.epoch = epoch  # losses that change over training (deferred re-weighting)
        for k in active:
            models[k].train()
        totals = [0.0] * len(models)
        if sample_weights is None:
            order = torch.randperm(len(x), generator=gen)
        else:  # e.g. class-balanced: draw with replacement, as many as there are samples
            order = torch.multinomial(sample_weights, len(x), replacement=True, generator=gen)
        for idx in order.split(cfg0.batch_size):
            xb, yb = x[idx].to(device), y[idx]
            outs = stacked.outputs(xb)
            losses = [losses_fn[k](outs[k] if k in outs else forward(models[k], xb, rng_states, k), yb) for k in active]
            if opt:
                opt.zero_grad(set_to_none=True)  # stopped heads get no gradient, so AdamW leaves them be
            stacked.zero_grad()
            if len(losses) == 1:
                losses[0].backward()
            else:
                torch.autograd.backward(losses)  # each head's gradient from its own loss alone, no NaN shared
            if opt and opt.param_groups:
                opt.step()
            stacked.step(epoch)
            for k in active:
                if cfgs[k].max_norm is not None:
                    max_norm_(models[k], cfgs[k].max_norm)
            for k, loss in zip(active, losses):
                totals[k] += loss.item() * len(idx)
        still = []
        with torch.no_grad():
            outs = stacked.outputs(xv, device)
        for k in active:
            model, cfg = models[k], cfgs[k]
            model.eval()
            with torch.no_grad():
                out = outs[k] if k in outs else forward_chunks(model, xv, device)
                val_loss = losses_fn[k](out, yv).item()
            row = {"epoch": epoch, "train_loss": totals[k] / len(x), "val_loss": val_loss, "lr": lr_at(cfg, epoch)}
            row.update(val_metrics(out.cpu()) if val_metrics else {})
            histories[k].append(row)
            if cfg.monitor not in row:
                raise HeadConfigError(
                    f"head.monitor: {cfg.monitor!r} is not measured here; choose one of {sorted(row)[1:]}"
                )
            score = sign * row[cfg.monitor]
            if not (math.isfinite(score) and math.isfinite(val_loss)):
                continue  # diverged (NaN or inf): it keeps its best epoch's weights and trains no further
            if score < best[k][0]:
                best[k] = (score, epoch, snapshot(k))
            if epoch - best[k][1] < patience(cfg, best[k][1], steps):
                still.append(k)
        active = still
    fitted = []
    for model, (_, best_epoch, state), history in zip(models, best, histories):
        model.cpu().load_state_dict(state)  # heads are kept and used on the CPU
        model.eval()
        fitted.append(Fitted(model=model, best_epoch=best_epoch, history=history))
    return fitted


MIN_WAIT_STEPS = 100  # optimizer steps a head waits for an improvement, at least (within `patience` epochs)


def patience(cfg: HeadConfig, best_epoch: int, steps_per_epoch: int = MIN_WAIT_STEPS) -> int:
    """Epochs a head waits for an improvement after its best one: as many as it took to reach it, at least
    `min_patience` and MIN_WAIT_STEPS optimizer steps' worth, and at most `patience`. A head that learns its task
    in 3 epochs (big data, a high learning rate, an MLP that starts to overfit) stops at about 8, not 33; one still
    improving after 40 epochs waits the whole `patience`, and so does one on a few dozen clips (one step an epoch,
    its validation loss noisy): an epoch costs next to nothing there."""
    floor = max(cfg.min_patience, math.ceil(MIN_WAIT_STEPS / max(1, steps_per_epoch)))
    return min(cfg.patience, max(floor, best_epoch))


def cpu_copy(model: nn.Module) -> dict:
    """The model's weights, copied to the CPU (the best epoch's, kept while training goes on)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def move_tensors(fn, device: torch.device) -> None:
    """A loss object's tensors (class weights, margins) moved to `device`; a plain function has none."""
    for name, value in list(getattr(fn, "__dict__", {}).items()):
        if isinstance(value, torch.Tensor):
            setattr(fn, name, value.to(device))


def forward(model: nn.Module, x: torch.Tensor, rng_states: list[torch.Tensor] | None, k: int) -> torch.Tensor:
    """`model(x)`, drawing (dropout) from head k's own RNG stream when `rng_states` are given."""
    if rng_states is None:
        return model(x)
    torch.set_rng_state(rng_states[k])
    out = model(x)
    rng_states[k] = torch.get_rng_state()
    return out


def retrain_classifier(fitted: Fitted, train, val, loss_fn, cfg: HeadConfig, val_metrics=None) -> Fitted:
    """Weight balancing's second stage (arXiv 2203.14197): only the classifier layer(s) train, for
    `cfg.stage2_epochs` more epochs with `loss_fn` (a class-balanced one), MaxNorm still held; the history
    goes on with `stage` 2 rows."""
    model = fitted.model
    keep = {id(p) for layer in classifier_layers(model) for p in layer.parameters()}
    before = {p: p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)
    try:
        second = fit(model, train, val, loss_fn, replace(cfg, epochs=cfg.stage2_epochs, warmup_epochs=0), val_metrics)
    finally:
        for p, flag in before.items():
            p.requires_grad_(flag)
    done = len(fitted.history)
    history = fitted.history + [{**row, "epoch": row["epoch"] + done, "stage": 2} for row in second.history]
    return Fitted(model=model, best_epoch=done + second.best_epoch, history=history)


def classifier_layers(model: nn.Module) -> list[nn.Linear]:
    """The last linear layer of a head, or of each of its sub-heads (late fusion, one-vs-rest)."""
    subs = list(model.heads) if isinstance(getattr(model, "heads", None), nn.ModuleList) else [model]
    return [[m for m in sub.modules() if isinstance(m, nn.Linear)][-1] for sub in subs]


@torch.no_grad()
def max_norm_(model: nn.Module, limit: float) -> None:
    """Weight balancing's MaxNorm (arXiv 2203.14197): each class's classifier weight vector is scaled back
    to norm `limit` whenever a step takes it past."""
    for layer in classifier_layers(model):
        norms = layer.weight.norm(dim=1, keepdim=True)
        layer.weight.mul_((limit / norms.clamp_min(1e-12)).clamp(max=1.0))


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
