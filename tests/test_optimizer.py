"""elbokit.optimizer.Adam: torch's Adam, step for step and bit for bit, and its state format."""

from __future__ import annotations

import copy

import pytest
import torch

from elbokit.optimizer import Adam, fusable


def _net(seed: int, dtype=torch.float32) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3)).to(dtype)


def _train(net: torch.nn.Module, optimizer, steps: int, found_inf_at: int | None = None) -> None:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(64, 5, generator=generator, dtype=next(net.parameters()).dtype)
    for step in range(steps):
        optimizer.zero_grad(set_to_none=True)
        batch = x[(step * 16) % 64:(step * 16) % 64 + 16]
        net(batch).square().mean().backward()
        if found_inf_at is not None:
            optimizer.found_inf.fill_(1.0 if step == found_inf_at else 0.0)
        optimizer.step()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("fused", [True, None])
def test_steps_equal_torch_adams_bit_for_bit(dtype, fused):
    ours, theirs = _net(0, dtype), _net(0, dtype)
    a = Adam(ours.parameters(), lr=3e-3, fused=fused if fused else False)
    b = torch.optim.Adam(theirs.parameters(), lr=3e-3, fused=fused)
    _train(ours, a, 25)
    _train(theirs, b, 25)
    for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(p, q)
    mine, torchs = a.state_dict(), b.state_dict()
    assert mine["param_groups"] == torchs["param_groups"]
    for i, values in torchs["state"].items():
        for key, value in values.items():
            assert torch.equal(mine["state"][i][key], value) and mine["state"][i][key].dtype == value.dtype


def test_a_flagged_step_is_skipped_as_torchs_fused_adam_skips_it():
    ours, theirs = _net(2), _net(2)
    a = Adam(ours.parameters(), lr=1e-2)
    b = torch.optim.Adam(theirs.parameters(), lr=1e-2, fused=True)
    a.found_inf, b.found_inf = torch.zeros(()), torch.zeros(())
    _train(ours, a, 6, found_inf_at=3)
    _train(theirs, b, 6, found_inf_at=3)
    assert all(torch.equal(p, q) for p, q in zip(ours.parameters(), theirs.parameters(), strict=True))
    assert all(float(s["step"]) == 5.0 for s in a.state.values())  # 6 steps, one skipped


def test_state_moves_between_torch_and_elbokit_both_ways():
    """A checkpoint written by torch's Adam resumes in ours and the other way round, and the
    continued runs equal an uninterrupted one."""
    straight = _net(3)
    optimizer = torch.optim.Adam(straight.parameters(), lr=2e-3, fused=True)
    _train(straight, optimizer, 10)
    first = _net(3)
    half = torch.optim.Adam(first.parameters(), lr=2e-3, fused=True)
    _train(first, half, 5)
    second = _net(3)
    second.load_state_dict(first.state_dict())
    ours = Adam(second.parameters(), lr=0.5)  # lr comes from the state
    ours.load_state_dict(half.state_dict())
    assert ours.param_groups[0]["lr"] == 2e-3
    _train_from(second, ours, 5, 10)
    assert all(torch.equal(p, q) for p, q in zip(second.parameters(), straight.parameters(), strict=True))
    back = _net(3)
    back.load_state_dict(second.state_dict())
    theirs = torch.optim.Adam(back.parameters(), lr=1.0, fused=True)
    theirs.load_state_dict(ours.state_dict())
    assert theirs.state_dict()["param_groups"] == ours.state_dict()["param_groups"]


def _train_from(net, optimizer, start: int, stop: int) -> None:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(64, 5, generator=generator)
    for step in range(start, stop):
        optimizer.zero_grad(set_to_none=True)
        batch = x[(step * 16) % 64:(step * 16) % 64 + 16]
        net(batch).square().mean().backward()
        optimizer.step()


def test_an_unfused_state_is_continued_unfused():
    """An older checkpoint's unfused Adam state: the run continues with torch's unfused
    update, as it started (bit for bit with torch's Adam loaded the same way)."""
    source = _net(4)
    unfused = torch.optim.Adam(source.parameters(), lr=1e-3)
    _train(source, unfused, 3)
    ours_net, theirs_net = _net(5), _net(5)
    ours_net.load_state_dict(source.state_dict())
    theirs_net.load_state_dict(source.state_dict())
    ours = Adam(ours_net.parameters())
    ours.load_state_dict(copy.deepcopy(unfused.state_dict()))  # (loading shares the tensors)
    theirs = torch.optim.Adam(theirs_net.parameters(), fused=True)
    theirs.load_state_dict(copy.deepcopy(unfused.state_dict()))
    assert ours.param_groups[0]["fused"] is None
    _train(ours_net, ours, 4)
    _train(theirs_net, theirs, 4)
    assert all(torch.equal(p, q) for p, q in zip(ours_net.parameters(), theirs_net.parameters(), strict=True))


def test_zero_grad_and_what_is_fusable():
    net = _net(6)
    optimizer = Adam(net.parameters())
    net(torch.randn(2, 5)).sum().backward()
    optimizer.zero_grad(set_to_none=False)
    assert all(torch.equal(p.grad, torch.zeros_like(p)) for p in net.parameters())
    optimizer.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    assert fusable(net.parameters()) and not fusable([])
    assert not fusable([torch.zeros(2), torch.zeros(2, dtype=torch.float64)])
    with pytest.raises(ValueError, match="fused Adam needs"):
        Adam([torch.zeros(2, dtype=torch.int64)], fused=True)
    with pytest.raises(TypeError, match="unexpected options"):
        Adam(net.parameters(), momentum=0.9)
