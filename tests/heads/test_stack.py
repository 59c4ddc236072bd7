"""Linear heads trained side by side (heads.stack.LinearStack) against torch's AdamW on each head alone."""

import torch
import torch.nn.functional as F
from torch import nn
from vidprobe.heads.stack import LinearStack


def test_a_stack_of_heads_steps_as_torch_adamw_steps_each_head_alone():
    torch.manual_seed(0)
    x, y = torch.randn(64, 12), torch.randn(64, 3)
    lrs, decays = [1e-3, 1e-2, 3e-2], [0.0, 1e-4, 1e-2]
    heads = [nn.Linear(12, 3) for _ in lrs]
    alone = [nn.Linear(12, 3) for _ in lrs]
    for a, h in zip(alone, heads):
        a.load_state_dict(h.state_dict())
    stack = LinearStack(heads)
    opts = [torch.optim.AdamW(a.parameters(), lr=lr, weight_decay=wd) for a, lr, wd in zip(alone, lrs, decays)]
    rate, decay = torch.tensor(lrs), torch.tensor(decays)
    for step in range(40):
        rows = torch.arange(step % 4 * 16, step % 4 * 16 + 16)
        stack.zero_grad()
        outs = stack.split(stack.outputs(x[rows]))
        losses = [F.mse_loss(o, y[rows]) * (k + 1) for k, o in enumerate(outs)]  # a loss of each head's own
        torch.autograd.backward(losses)
        stack.step(rate, decay)
        for k, (a, opt) in enumerate(zip(alone, opts)):
            opt.zero_grad()
            (F.mse_loss(a(x[rows]), y[rows]) * (k + 1)).backward()
            opt.step()
    for k, a in enumerate(alone):
        for name, value in stack.state(k).items():
            torch.testing.assert_close(value, a.state_dict()[name], rtol=1e-5, atol=1e-6)


def test_a_stopped_head_stays_and_a_diverged_one_touches_no_other():
    torch.manual_seed(1)
    x, y = torch.randn(32, 6), torch.randn(32, 2)
    stack = LinearStack([nn.Linear(6, 2) for _ in range(3)])
    before = stack.state(0)
    for _ in range(5):
        stack.zero_grad()
        outs = stack.split(stack.outputs(x))
        losses = [F.mse_loss(outs[1], y), F.mse_loss(outs[2], y) * float("nan")]  # head 0 has stopped
        torch.autograd.backward(losses)
        stack.step(torch.tensor([0.0, 0.01, 0.01]), torch.tensor([0.1, 0.1, 0.1]))
    assert all(torch.equal(before[n], v) for n, v in stack.state(0).items())  # lr 0: not even weight decay
    assert all(torch.isfinite(v).all() for v in stack.state(1).values())
    assert torch.isnan(stack.state(2)["weight"]).all()
