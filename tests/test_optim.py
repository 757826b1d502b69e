"""rl.optim.Adam against torch.optim.Adam(fused=True): the same parameters after every step."""
from __future__ import annotations

import pytest
import torch

from accelerators import devices
from rl.optim import Adam

SHAPES = [(8, 5), (8,), (2, 4, 4), (3, 1, 1), (1,)]


def _groups(params, second=(3e-4, 0.5)):
    return [(params[:3], 1e-3, 0.9), (params[3:], *second)]


def _torch_adam(params, second):
    return torch.optim.Adam([{"params": p, "lr": lr, "betas": (b1, 0.999)}
                             for p, lr, b1 in _groups(params, second)], fused=True)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("second", [(3e-4, 0.5), (1e-3, 0.9)], ids=["own", "same-as-first"])
@pytest.mark.parametrize("missing", [set(), {1}, {0, 1, 2}])
def test_matches_torch_fused_adam_step_for_step(missing, second, device):
    """Also when some gradients are missing for a while: those tensors skip the step and
    their own step count (bias correction) stays behind, as in torch. Groups with the same
    hyperparameters (run as one kernel call) included."""
    gen = torch.Generator().manual_seed(0)
    start = [torch.randn(s, generator=gen).to(device) for s in SHAPES]
    ours = [torch.nn.Parameter(t.clone()) for t in start]
    ref = [torch.nn.Parameter(t.clone()) for t in start]
    optimizers = [Adam(_groups(ours, second)), _torch_adam(ref, second)]
    for step in range(12):
        grads = [torch.randn(s, generator=gen).to(device) for s in SHAPES]
        for params, optimizer in zip((ours, ref), optimizers):
            optimizer.zero_grad()
            for i, (p, g) in enumerate(zip(params, grads)):
                if not (3 <= step < 7 and i in missing):
                    p.grad = g.clone()
            optimizer.step()
        for a, b in zip(ours, ref):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not any(torch.equal(a, b) for a, b in zip(ours, start))  # it did train


def test_zero_grad_sets_gradients_to_none():
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.ones(3)
    optimizer = Adam([([p], 1e-3, 0.9)])
    optimizer.zero_grad()
    assert p.grad is None
    optimizer.step()  # no gradient: no change
    assert torch.equal(p, torch.ones(3))


def test_refuses_a_group_mixing_dtypes():
    with pytest.raises(ValueError, match="dtype"):
        Adam([([torch.nn.Parameter(torch.ones(2)),
                torch.nn.Parameter(torch.ones(2, dtype=torch.float64))], 1e-3, 0.9)])
