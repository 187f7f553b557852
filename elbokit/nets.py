"""Network builders shared by every model (one MLP, not one per variant), and the
convolutional encoder/decoder pair for image data.

The convolutional networks see a flat example ``[..., C*H*W]`` (the row-major flattening of
a ``C x H x W`` array, channels first, as torch lays images out) and speak the same flat
interface as :func:`mlp`, so a model can swap one for the other without any other change.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU}

# Every convolution halves the feature map: kernel 3, stride 2, padding 1 maps n pixels to
# ceil(n / 2) for every n >= 1 (a 1-pixel map stays 1 pixel, odd sizes lose nothing), and the
# transposed convolution with output_padding 1 - n % 2 maps ceil(n / 2) back to n exactly,
# so no size needs cropping. (Kernel 4 / padding 1 gives floor(n / 2): odd sizes and 1-pixel
# maps would need cropping or fail.)
KERNEL, STRIDE, PADDING = 3, 2, 1


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int, activation: str = "relu") -> nn.Sequential:
    """``in_dim -> hidden[0] -> ... -> out_dim`` with ``activation`` between layers.

    With ``hidden=()`` this is a single affine map (the "linear" encoder/decoder).
    Input ``[..., in_dim]`` -> output ``[..., out_dim]``.
    """
    widths = [in_dim, *hidden, out_dim]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        if i > 0:
            layers.append(ACTIVATIONS[activation]())
        layers.append(nn.Linear(a, b))
    return nn.Sequential(*layers)


def conv_sizes(size: int, depth: int) -> list[int]:
    """The side lengths of the feature maps ``[size, ceil(size/2), ...]`` (``depth + 1``
    entries) after each of ``depth`` stride-2 convolutions."""
    sizes = [size]
    for _ in range(depth):
        sizes.append((sizes[-1] + 2 * PADDING - KERNEL) // STRIDE + 1)
    return sizes


class ConvEncoder(nn.Module):
    """Images -> parameters: ``x: [..., C*H*W] -> [..., out_dim]``.

    One stride-2 convolution per entry of ``channels`` (kernel 3, padding 1, ``activation``
    after each), so ``H x W`` shrinks to ``ceil(H / 2^d) x ceil(W / 2^d)`` with ``d =
    len(channels)``; the feature map is flattened and an :func:`mlp` with ``hidden`` widths
    maps it to ``out_dim`` (``hidden=()``: one linear layer).
    """

    def __init__(self, image_shape: Sequence[int], channels: Sequence[int], hidden: Sequence[int],
                 out_dim: int, activation: str = "relu") -> None:
        super().__init__()
        self.image_shape = tuple(int(s) for s in image_shape)
        c, h, w = self.image_shape
        layers: list[nn.Module] = []
        for width in channels:
            layers += [nn.Conv2d(c, width, KERNEL, stride=STRIDE, padding=PADDING),
                       ACTIVATIONS[activation]()]
            c = width
        self.features = nn.Sequential(*layers)
        flat = c * conv_sizes(h, len(channels))[-1] * conv_sizes(w, len(channels))[-1]
        self.head = mlp(flat, hidden, out_dim, activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        # Conv2d wants exactly one batch dimension: fold any leading ones and restore them.
        images = x.reshape(math.prod(lead), *self.image_shape)
        out = self.head(self.features(images).flatten(1))
        return out.reshape(*lead, out.shape[-1])


class ConvDecoder(nn.Module):
    """Codes -> per-pixel parameters: ``z: [..., in_dim] -> [..., per_pixel*C*H*W]``.

    The mirror of :class:`ConvEncoder` with the same ``channels`` (given in the encoder's
    order): an :func:`mlp` with ``hidden`` widths maps z to the smallest feature map
    (``channels[-1]`` channels), then one stride-2 transposed convolution per entry of
    ``channels`` grows it back to exactly ``H x W`` (``output_padding`` chosen per layer and
    axis), the last one giving ``per_pixel * C`` channels: ``per_pixel`` numbers per pixel
    and channel (a Gaussian with a decoder-predicted scale needs 2: location and raw scale).

    ``layout`` is the order the observation model reads its ``[..., n_params]`` in:
    ``"parameter-major"`` puts all C*H*W values of the first parameter first, then the
    second's (e.g. ``Gaussian._loc_scale``'s split into loc and scale halves);
    ``"parameter-minor"`` keeps a pixel's ``per_pixel`` numbers together (e.g. a
    categorical likelihood's K logits per pixel). With ``per_pixel=1`` they agree.
    """

    layouts = ("parameter-major", "parameter-minor")

    def __init__(self, in_dim: int, image_shape: Sequence[int], channels: Sequence[int],
                 hidden: Sequence[int], per_pixel: int = 1, activation: str = "relu",
                 layout: str = "parameter-major") -> None:
        super().__init__()
        if layout not in self.layouts:
            raise ValueError(f"layout must be one of {', '.join(self.layouts)}, not {layout!r}")
        self.image_shape = tuple(int(s) for s in image_shape)
        self.per_pixel, self.layout = per_pixel, layout
        c, h, w = self.image_shape
        depth = len(channels)
        heights, widths = conv_sizes(h, depth), conv_sizes(w, depth)
        first = channels[-1] if depth else per_pixel * c
        self.start = (first, heights[-1], widths[-1])  # the smallest feature map
        self.head = mlp(in_dim, hidden, math.prod(self.start), activation)
        layers: list[nn.Module] = [ACTIVATIONS[activation]()] if depth else []
        outs = [*channels[::-1][1:], per_pixel * c]  # channels after each transposed conv
        for i in range(depth):
            size = depth - 1 - i  # index into heights/widths of this layer's output size
            output_padding = (1 - heights[size] % 2, 1 - widths[size] % 2)
            if i > 0:
                layers.append(ACTIVATIONS[activation]())
            layers.append(nn.ConvTranspose2d(first, outs[i], KERNEL, stride=STRIDE,
                                             padding=PADDING, output_padding=output_padding))
            first = outs[i]
        self.features = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        lead = z.shape[:-1]
        n = math.prod(lead)
        maps = self.features(self.head(z.reshape(n, z.shape[-1])).reshape(n, *self.start))
        c, h, w = self.image_shape
        out = maps.reshape(n, self.per_pixel, c, h, w)  # channel index = parameter * C + c
        if self.layout == "parameter-minor":
            out = out.permute(0, 2, 3, 4, 1)
        return out.reshape(*lead, self.per_pixel * c * h * w)
