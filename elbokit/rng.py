"""Random numbers that a block draws without disturbing anyone else's."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Run a block with torch's RNG seeded, leaving the caller's RNG state untouched (the
    CPU one, and the current GPU's once CUDA is in use). ``None``: the block draws from the
    caller's stream."""
    if seed is None:
        yield
        return
    devices = [torch.cuda.current_device()] if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
