"""What the benchmarks share: the data they train on, and how they finish."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "binarized_mnist" / "binarized_mnist.npz"
DIM = 784


def load_binarized_mnist(path: Path, n: int, seed: int = 0) -> tuple[torch.Tensor, str]:
    """The first ``n`` training images as float32 ``[n, 784]`` and a line saying what they
    are; random Bernoulli(0.2) data, with a loud warning, when the file is missing."""
    if path.is_file():
        with np.load(path, allow_pickle=False) as archive:
            images = archive["x_train"][:n]
        x = torch.from_numpy(images.reshape(len(images), -1).astype(np.float32))
        return x, f"binarized MNIST, first {len(x)} of x_train ({path})"
    generator = torch.Generator().manual_seed(seed)
    x = torch.bernoulli(torch.full((n, DIM), 0.2), generator=generator)
    note = f"WARNING: RANDOM Bernoulli(0.2) data, {n} x {DIM} ({path} not found)"
    print("!" * len(note), note, "!" * len(note), sep="\n", file=sys.stderr)
    return x, note


def load_binarized_digits(n: int | None = None) -> tuple[torch.Tensor, str]:
    """scikit-learn's 8x8 digits binarized at 8/16 (``elbokit.data.load("digits")``, bundled
    with scikit-learn, no download): the first ``n`` (default all 1797) as float32 ``[n, 64]``
    and a line saying what they are."""
    from elbokit import data

    x = torch.from_numpy(data.load("digits").x[:n].astype(np.float32))
    return x, f"scikit-learn digits binarized at 8/16, first {len(x)} of 1797 x 64"


def finish(result: dict, json_path: Path | None) -> dict:
    """Print the total time and write ``result`` as JSON when asked; returns ``result``."""
    print(f"total time {result['total_seconds']:.1f} s")
    if json_path is not None:
        json_path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {json_path}")
    return result
