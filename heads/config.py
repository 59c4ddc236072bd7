"""The heads library's config sections: the target (task), the head trained on cached features, and the
fine-tune of the backbone's last blocks.

Each field's comment is its documentation; `pipeline/config.py` composes these sections with the
others and validates YAML against them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vidprobe.features.config import choice, compose


def parse_spec(spec: str, own_set: str) -> tuple[str, str]:
    """ "<feature_set>:<key>" -> (feature set, key); a bare key is in `own_set`."""
    name, _, key = spec.rpartition(":")
    return name or own_set, key


@dataclass
class TaskConfig:
    label: str | None = "label"  # manifest column with the class name; null for none
    multilabel: str | None = None  # manifest column with '|'-joined class names (multilabel adapter: labels)
    traits: list[str] = field(default_factory=list)  # numeric manifest columns to regress
    mode: str = choice("joint", "per_target")  # one multi-output head, or a head per trait / class (one-vs-rest)
    n_jobs: int = -1  # per_target: heads trained at once (threads)


@dataclass
class HeadCore:
    """The `head` section: what every head trained on cached features reads. Each head's and each loss's own
    settings (`head.hidden`, `head.focal_gamma`, `head.coop_init`, ...) are declared beside it (heads/models.py,
    heads/losses.py, heads/coop.py) and join this section in `HeadConfig`, still as `head.<key>`."""

    name: str = "linear"  # linear | mlp | attention (N, T, D) | zero-shot (head.prompts) | coop (prompt learning)
    features: str = "video/pooled"  # "<key>" of the video features, or "<feature_set>:<key>" of another set
    fuse: list[str] = field(default_factory=list)  # more inputs, "<feature_set>:<key>" (e.g. whisper:audio/pooled)
    fusion: str = choice("concat", "late", "gated")  # how head.features and head.fuse combine; missing ones are masked
    normalize: str = choice("standardize", "l2")  # features: train mean/std per column, or unit length per row
    lr: float = 1e-2  # AdamW's learning rate
    weight_decay: float = 1e-4  # AdamW's (decoupled) weight decay
    epochs: int = 200  # at most; early stopping (patience) usually ends sooner
    batch_size: int = 256  # samples per step
    schedule: str = choice("cosine", "constant")  # learning rate per epoch, after warmup_epochs of linear warm-up
    warmup_epochs: int = 0  # epochs of linear learning-rate warm-up from 0
    monitor: str = "val_loss"  # early stopping and the kept weights: val_loss or a validation metric (acc, mAP, ...)
    patience: int = 30  # at most this many epochs without improvement on `monitor` before stopping
    min_patience: int = 5  # and 100 steps, at least: a head waits as many epochs as its best took, within these
    seed: int = 0  # weight init, shuffling, dropout, few-shot draws
    loss: str = "ce"  # class label: ce | focal | ldam (heads/losses.py registers them)
    multilabel_loss: str = "bce"  # multi-label: bce | focal | eql | ldam
    regression_loss: str = "mse"  # traits: mse | l1 | huber | ccc
    max_norm: float | None = None  # weight balancing: cap each class's classifier weight norm after every step
    stage2_epochs: int = 0  # weight balancing's second stage: the classifier layer alone, class-balanced, this long
    sampler: str = choice("shuffle", "balanced")  # balanced: each class drawn equally often (with replacement)
    k_train: int | None = None  # few-shot: at most k training samples per class (drawn with head.seed)
    k_val: int | None = None  # at most k validation samples per class
    memory_mb: int = 4096  # a split's features bigger than this (as float32) are streamed from a float16 copy on disk
    device: str = "auto"  # where heads train: auto (the GPU when CUDA has one, else the CPU), cpu, cuda, cuda:1

    @property
    def uses_prompts(self) -> bool:
        """Its classifier starts from (or is) the class-prompt embeddings named by `prompts`."""
        return self.name == "zero-shot" or self.init == "prompts"

    def feature_spec(self, own_set: str) -> tuple[str, str]:
        """`features` as (feature set, key): "<feature_set>:<key>" names another set of the dataset (e.g.
        whisper-tiny.en:audio/pooled); a bare key is in `own_set`, the config's own video features."""
        return parse_spec(self.features, own_set)

    def fused_specs(self, own_set: str) -> list[tuple[str, str, str]]:
        """`fuse` as (spec, feature set, key) per input."""
        return [(spec, *parse_spec(spec, own_set)) for spec in self.fuse]

    def prompt_spec(self) -> tuple[str, str]:
        """`prompts` as (feature set, key); the key defaults to text/pooled."""
        name, _, key = (self.prompts or "").partition(":")
        return name, key or "text/pooled"

    @property
    def prompted(self) -> bool:
        """It classifies by similarity to class prompts (zero-shot, prompt-initialised, CoOp): features compared
        by direction, L2-normalised."""
        return self.uses_prompts or self.name == "coop"


from vidprobe.heads import coop, losses, models  # noqa: E402, F401  # config schema

HeadConfig = compose("HeadConfig", HeadCore, [*models.head_settings(), *losses.loss_settings()], __name__)


@dataclass
class FinetuneConfig:
    name: str = "finetune"  # the run folder: <paths.cache>/runs/<name>/
    init_head: str | None = None  # a train run (name or path) whose class head starts the classifier; None: random
    unfreeze_blocks: int = 2  # last N transformer blocks (VideoMAE, CLIP) / of I3D's 9 Mixed blocks; -1: all
    layer_decay: float = 1.0  # < 1: layer-wise learning-rate decay from the top block down
    lr: float = 1e-4  # AdamW on the unfrozen blocks
    head_lr: float | None = None  # None: lr
    weight_decay: float = 0.05  # on weights, not biases or norms
    epochs: int = 10  # at most; early stopping (patience) may end sooner
    warmup_epochs: int = 1  # epochs of linear learning-rate warm-up
    freeze_epochs: int = 0  # gradual schedule: the classifier alone for this many epochs, then the unfrozen blocks too
    batch_size: int = 8  # clips per process per micro-batch (a step: x accumulate x world size)
    accumulate: int = 1  # gradient accumulation steps per optimiser step
    amp: str = choice("none", "bf16", "fp16")  # autocast on CUDA (fp16 with a GradScaler); CPU: float32
    grad_checkpointing: bool = False  # recompute block activations in the backward pass (less memory, slower)
    monitor: str = "acc"  # early stopping on a validation metric (or val_loss)
    patience: int = 5  # epochs without improvement on `monitor` before stopping
    seed: int = 0  # init, shuffling, augmentation
    num_workers: int = 2  # DataLoader workers decoding training clips
    augment_crop_scale: list[float] = field(default_factory=lambda: [0.6, 1.0])  # crop area share; [1, 1]: off
    augment_flip: bool = True  # random horizontal flips (off when left and right matter)
    videomix: str = choice("none", "spatial", "temporal")  # VideoMix: a box through all frames, or a run of frames
    videomix_alpha: float = 1.0  # the share kept ~ Beta(alpha, alpha); the labels weighed by it
    augment_jitter: float = 0.1  # each end of the segment moves by up to this share of its length (< 0.5)
    eval_views: int = 1  # temporal views averaged at evaluation
    eval_crops: int = choice(1, 3)  # spatial crops averaged at evaluation
    bench_steps: int = 0  # > 0: time this many training steps, write bench.json, and stop
    resume: bool = False  # continue from <run>/checkpoints/last.pt exactly where it stopped (none yet: starts afresh)
    export: bool = True  # write the fine-tuned backbone as a model directory `vidprobe embed` can load

    def problems(self) -> list[str]:
        """Every value that cannot work, as `finetune.<key>: why` lines (empty when all can)."""
        checks = [
            (self.unfreeze_blocks >= -1, f"unfreeze_blocks: {self.unfreeze_blocks}; use N >= 0 blocks, or -1 for all"),
            (0 < self.layer_decay <= 1, f"layer_decay: {self.layer_decay}; use a value in (0, 1] (1: no decay)"),
            (self.lr > 0 and (self.head_lr is None or self.head_lr > 0), "lr / head_lr: must be > 0"),
            (self.epochs >= 0 and self.warmup_epochs >= 0, "epochs / warmup_epochs: must be >= 0"),
            (self.videomix_alpha > 0, f"videomix_alpha: {self.videomix_alpha}; must be > 0"),
            (
                0 <= self.freeze_epochs < max(self.epochs, 1),
                f"freeze_epochs: {self.freeze_epochs}; use 0 <= k < epochs",
            ),
            (self.batch_size >= 1 and self.accumulate >= 1, "batch_size / accumulate: must be >= 1"),
            (self.patience >= 1, f"patience: {self.patience}; must be >= 1"),
            (self.eval_views >= 1, f"eval_views: {self.eval_views}; must be >= 1"),
            (self.num_workers >= 0 and self.bench_steps >= 0, "num_workers / bench_steps: must be >= 0"),
            (
                len(self.augment_crop_scale) == 2 and 0 < self.augment_crop_scale[0] <= self.augment_crop_scale[1] <= 1,
                f"augment_crop_scale: {self.augment_crop_scale}; give [min, max] area shares, 0 < min <= max <= 1 "
                "([1, 1]: off)",
            ),
            (
                0 <= self.augment_jitter < 0.5,
                f"augment_jitter: {self.augment_jitter}; use a share of the segment in [0, 0.5)",
            ),
        ]
        return [f"finetune.{text}" for ok, text in checks if not ok]
