"""elbokit.rng: seeded blocks."""

import torch

from elbokit.rng import seeded


def test_seeded_blocks_repeat_and_leave_the_caller_alone():
    torch.manual_seed(3)
    outside = torch.random.get_rng_state()
    with seeded(7):
        a = torch.rand(3)
    with seeded(7):
        b = torch.rand(3)
    assert torch.equal(a, b) and torch.equal(torch.random.get_rng_state(), outside)
