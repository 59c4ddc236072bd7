"""Plain linear heads on one input, trained as one: `LinearStack` lays their weights side by side, so a training
step is one matmul forward and one backward for all of them, and its AdamW (torch's algorithm: decoupled weight
decay, bias-corrected moments) updates the stacked rows with each head's own learning rate and weight decay. Each
head's gradient comes from its own loss alone (the rows of the others get none), so a sweep of linear heads over
learning rates, weight decays and losses costs about what one head costs, and each trains as it would alone.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from vidprobe.heads.config import HeadConfig
from vidprobe.heads.schedules import lr_at
from vidprobe.heads.stream import DiskRows, forward_chunks


class LinearStack:
    def __init__(self, layers: list[nn.Linear], betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.sizes = [layer.out_features for layer in layers]
        self.starts = [sum(self.sizes[:k]) for k in range(len(layers))]
        self.weight = torch.cat([layer.weight.detach() for layer in layers]).requires_grad_()
        self.bias = torch.cat([layer.bias.detach() for layer in layers]).requires_grad_()
        self.head_of_row = torch.repeat_interleave(torch.arange(len(layers)), torch.tensor(self.sizes))
        self.moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in (self.weight, self.bias)]
        self.betas, self.eps, self.steps = betas, eps, 0

    def keep(self, heads: list[int]) -> LinearStack:
        """A stack of these heads only (their weights, moments and step count): heads that stopped cost nothing."""
        rows = torch.cat([torch.arange(self.starts[k], self.starts[k] + self.sizes[k]) for k in heads])
        out = LinearStack.__new__(LinearStack)
        out.sizes = [self.sizes[k] for k in heads]
        out.starts = [sum(out.sizes[:k]) for k in range(len(heads))]
        out.weight, out.bias = (p.detach()[rows].requires_grad_() for p in (self.weight, self.bias))
        out.head_of_row = torch.repeat_interleave(torch.arange(len(heads)), torch.tensor(out.sizes))
        out.moments = [(m[rows], v[rows]) for m, v in self.moments]
        out.betas, out.eps, out.steps = self.betas, self.eps, self.steps
        return out

    def outputs(self, x: torch.Tensor) -> torch.Tensor:
        """(N, total outputs): every head's outputs side by side."""
        return F.linear(x, self.weight, self.bias)

    def split(self, out: torch.Tensor) -> list[torch.Tensor]:
        return list(out.split(self.sizes, dim=-1))

    def zero_grad(self) -> None:
        self.weight.grad = self.bias.grad = None

    @torch.no_grad()
    def step(self, lr: torch.Tensor, weight_decay: torch.Tensor) -> None:
        """One AdamW step; `lr` and `weight_decay` per head (a stopped head's lr is 0: its rows stay as they are)."""
        self.steps += 1
        b1, b2 = self.betas
        lr_rows, wd_rows = lr[self.head_of_row], weight_decay[self.head_of_row]
        step_size = lr_rows / (1 - b1**self.steps)
        root = math.sqrt(1 - b2**self.steps)
        for p, (avg, avg_sq) in zip((self.weight, self.bias), self.moments):
            if p.grad is None:
                continue
            per_row = (lambda v: v[:, None]) if p.dim() == 2 else (lambda v: v)
            p.mul_(per_row(1 - lr_rows * wd_rows))
            avg.lerp_(p.grad, 1 - b1)
            avg_sq.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
            p.sub_(avg / (avg_sq.sqrt() / root).add_(self.eps) * per_row(step_size))

    def state(self, k: int) -> dict[str, torch.Tensor]:
        """Head k's weights as its nn.Linear's state dict, copied to the CPU."""
        rows = slice(self.starts[k], self.starts[k] + self.sizes[k])
        return {
            name: p[rows].detach().to("cpu", copy=True) for name, p in (("weight", self.weight), ("bias", self.bias))
        }


class StackedHeads:
    """The plain linear heads of a batch of heads (`nn.Linear` on (N, D) inputs, no max-norm), as one
    `LinearStack` that sheds the heads that stop; each is known by its index in the batch."""

    def __init__(self, models: list[nn.Module], cfgs: list[HeadConfig], input_shape: tuple):
        plain = len(input_shape) == 2
        self.members = [k for k, m in enumerate(models) if plain and type(m) is nn.Linear and cfgs[k].max_norm is None]
        self.stack = LinearStack([models[k] for k in self.members]) if self.members else None
        self.cfgs = cfgs

    def __contains__(self, k: int) -> bool:
        return k in self.members

    def keep(self, active: list[int]) -> None:
        """Only the heads still training stay in the stack."""
        still = [k for k in self.members if k in active]
        if still != self.members:
            self.stack = self.stack.keep([self.members.index(k) for k in still]) if still else None
            self.members = still

    def outputs(self, x: torch.Tensor | DiskRows, device: torch.device | None = None) -> dict[int, torch.Tensor]:
        """Each member's outputs for `x` (rows on disk: a chunk at a time, moved to `device`), from one matmul."""
        if not self.stack:
            return {}
        return dict(zip(self.members, self.stack.split(forward_chunks(self.stack.outputs, x, device))))

    def zero_grad(self) -> None:
        if self.stack:
            self.stack.zero_grad()

    def step(self, epoch: int) -> None:
        if self.stack:
            cfgs = [self.cfgs[k] for k in self.members]
            self.stack.step(torch.tensor([lr_at(c, epoch) for c in cfgs]), torch.tensor([c.weight_decay for c in cfgs]))

    def state(self, k: int) -> dict[str, torch.Tensor]:
        return self.stack.state(self.members.index(k))
