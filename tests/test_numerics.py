"""elbokit.numerics against ground truth: float64 sums written out, and torch's own functions
where the two must agree exactly (infinities, NaN, empty underflow)."""

from __future__ import annotations

import math

import pytest
import torch

from elbokit import numerics


def _spread(shape: tuple[int, ...], scale: float, seed: int = 0) -> torch.Tensor:
    """Log-weights spread over ``scale`` nats: most exponentials relative to the largest
    underflow float32 when scale >> 87."""
    generator = torch.Generator().manual_seed(seed)
    return -scale * torch.rand(shape, generator=generator) + 5.0


@pytest.mark.parametrize("scale", [3.0, 1000.0])
@pytest.mark.parametrize("dim", [0, -1])
def test_logsumexp_is_the_float64_sum_of_exponentials(scale: float, dim: int) -> None:
    values = _spread((40, 30), scale)
    reference = torch.tensor([math.log(math.fsum(math.exp(v) for v in row.tolist()))
                              for row in values.double().movedim(dim, -1)], dtype=torch.float64)
    ours = numerics.logsumexp(values, dim)
    assert ours.dtype == torch.float32 and ours.shape == reference.shape
    # float32: a few units in the last place of numbers up to ~10
    assert torch.allclose(ours.double(), reference, rtol=0, atol=4e-6)
    assert torch.equal(numerics.logsumexp(values, dim, keepdim=True).squeeze(dim), ours)


def test_logsumexp_gradient_is_the_softmax() -> None:
    values = _spread((6, 50), 1000.0).requires_grad_()
    numerics.logsumexp(values, -1).sum().backward()
    expected = torch.softmax(values.detach().double(), -1)
    assert torch.allclose(values.grad.double(), expected, rtol=0, atol=1e-7)
    assert (values.grad >= 0).all()


def test_logsumexp_keeps_torchs_special_values() -> None:
    inf, nan = math.inf, math.nan
    values = torch.tensor([[0.0, -inf], [-inf, -inf], [inf, 1.0], [nan, 1.0], [-1e30, -2e30]])
    assert torch.allclose(numerics.logsumexp(values, -1), torch.logsumexp(values, -1),
                          equal_nan=True)
    ours = numerics.logsumexp(values, -1)
    assert ours[0] == 0.0 and ours[1] == -inf and ours[2] == inf and math.isnan(ours[3])
    assert ours[4] == -1e30


def test_exp_is_exp_and_exactly_zero_where_float32_underflows() -> None:
    values = torch.tensor([0.0, -1.0, -50.0, -86.9, -87.5, -103.0, -200.0, -math.inf, math.inf,
                           3.0])
    ours = numerics.exp(values)
    reference = values.double().exp()
    # within e^-87 = 1.6e-38 of the true value (absolute; below float32's smallest normal
    # number, 1.2e-38, the true value is not representable), and to float32's rounding above
    finite = torch.isfinite(values)
    error = (ours.double() - reference)[finite].abs()
    assert torch.all(error <= 2e-38 + 1.2e-7 * reference[finite])
    assert torch.equal(ours[[5, 6, 7]], torch.zeros(3))  # no subnormals, -inf gives 0
    assert ours[8] == math.inf and math.isnan(numerics.exp(torch.tensor(math.nan)))
    grad = torch.tensor([-1.0, -200.0], requires_grad=True)
    numerics.exp(grad).sum().backward()
    assert torch.allclose(grad.grad, torch.tensor([math.exp(-1.0), 0.0]))


def test_float64_is_handled_and_other_dtypes_fall_back_to_torch() -> None:
    values = _spread((20, 10), 2000.0).double()
    reference = torch.logsumexp(values, -1)
    assert torch.allclose(numerics.logsumexp(values, -1), reference, rtol=0, atol=1e-12)
    assert numerics.exp(torch.tensor([-800.0], dtype=torch.float64)).item() == 0.0
    half = _spread((4, 8), 3.0).bfloat16()
    assert torch.equal(numerics.logsumexp(half, -1), torch.logsumexp(half, -1))
    assert torch.equal(numerics.exp(half), half.exp())
