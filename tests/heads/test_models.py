"""The MLP head's fused first layers (heads.models.NormLinear) against plain autograd."""

import copy

import torch
from torch import nn
from vidprobe.heads.config import HeadConfig
from vidprobe.heads.models import MLP, build_head


def plain(model: MLP) -> nn.Sequential:
    """The same layers and weights as a plain nn.Sequential: what autograd alone computes."""
    return nn.Sequential(*copy.deepcopy(list(model)))


def grads(model: nn.Module, x, y) -> dict[str, torch.Tensor]:
    model.zero_grad()
    torch.nn.functional.mse_loss(model(x), y).backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def test_mlp_gradients_equal_autograds_in_float64():
    torch.manual_seed(0)
    model = build_head(HeadConfig(name="mlp", hidden=12, dropout=0.0), 20, 3).double()
    assert isinstance(model, MLP)
    with torch.no_grad():  # gamma and beta away from their 1 and 0 start, so every term of the gradient counts
        model[0].weight.uniform_(0.5, 1.5)
        model[0].bias.uniform_(-0.5, 0.5)
    x, y = torch.randn(64, 20, dtype=torch.float64) * 3 + 1, torch.randn(64, 3, dtype=torch.float64)
    fused, reference = grads(model, x, y), grads(plain(model), x, y)
    assert fused.keys() == reference.keys()
    for name in fused:
        torch.testing.assert_close(fused[name], reference[name], rtol=1e-10, atol=1e-12, msg=name)


def test_mlp_fused_path_only_where_it_applies():
    torch.manual_seed(1)
    model = build_head(HeadConfig(name="mlp", hidden=8, dropout=0.0), 6, 2)
    x = torch.randn(5, 6)
    with torch.no_grad():
        assert torch.equal(model(x), plain(model)(x))  # prediction is the plain sequence, bit for bit
    out = model(x)
    assert out.grad_fn is not None and torch.allclose(out, plain(model)(x), atol=1e-6)
    # a frozen first layer (weight balancing's second stage) or an input that needs its gradient: plain autograd
    for p in list(model[0].parameters()) + list(model[1].parameters()):
        p.requires_grad_(False)
    grads_frozen = grads(model, x, torch.zeros(5, 2))
    assert set(grads_frozen) == {"4.weight", "4.bias"}
    for p in model.parameters():
        p.requires_grad_(True)
    xg = x.clone().requires_grad_(True)
    model(xg).sum().backward()
    assert xg.grad is not None and xg.grad.abs().sum() > 0


def test_mlp_state_dict_is_the_plain_sequences():
    """Bundles saved before MLP existed (an nn.Sequential's state dict) load into it unchanged."""
    model = build_head(HeadConfig(name="mlp", hidden=8), 6, 2)
    assert list(model.state_dict()) == list(plain(model).state_dict())
    fresh = build_head(HeadConfig(name="mlp", hidden=8), 6, 2)
    fresh.load_state_dict(plain(model).state_dict())
    x = torch.randn(4, 6)
    with torch.no_grad():
        assert torch.equal(fresh.eval()(x), model.eval()(x))


def test_mlp_trains_as_plain_autograd_does():
    """A whole fit, fused vs plain: the same weights up to float32 rounding."""
    from vidprobe.heads.trainer import fit

    torch.manual_seed(2)
    x, xv = torch.randn(256, 32), torch.randn(64, 32)
    w = torch.randn(32, 2)
    y, yv = x @ w + 0.1 * torch.randn(256, 2), xv @ w
    cfg = HeadConfig(name="mlp", hidden=16, dropout=0.0, epochs=5, batch_size=32, lr=0.01)
    model = build_head(cfg, 32, 2)
    reference = plain(model)
    fused = fit(model, (x, y), (xv, yv), torch.nn.functional.mse_loss, cfg).model
    unfused = fit(reference, (x, y), (xv, yv), torch.nn.functional.mse_loss, cfg).model
    for (name, a), (_, b) in zip(fused.state_dict().items(), unfused.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
