"""elbokit.nets: the MLP builder's layers, the feature-map sizes against torch's own
convolutions, and the convolutional encoder/decoder pair seen as networks (their use as a
VAE option: test_conv.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from elbokit.nets import ACTIVATIONS, ConvDecoder, ConvEncoder, conv_sizes, mlp


@pytest.mark.parametrize("hidden", [(), (7,), (5, 3, 4)])
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_mlp_is_affine_maps_of_the_stated_widths_with_activations_between(hidden, activation):
    net = mlp(6, hidden, 2, activation)
    linear = [m for m in net if isinstance(m, nn.Linear)]
    widths = [6, *hidden, 2]
    pairs = list(zip(widths[:-1], widths[1:], strict=True))
    assert [(m.in_features, m.out_features) for m in linear] == pairs
    # Linear, act, Linear, ..., act, Linear: an activation between layers, none at either end.
    kinds = [type(m) for m in net]
    assert kinds[0] is nn.Linear and kinds[-1] is nn.Linear
    assert kinds[1::2] == [ACTIVATIONS[activation]] * len(hidden)
    assert kinds[::2] == [nn.Linear] * (len(hidden) + 1)
    # Leading dimensions pass through: [k, batch, 6] -> [k, batch, 2], sample by sample.
    x = torch.randn(3, 4, 6)
    assert net(x).shape == (3, 4, 2)
    torch.testing.assert_close(net(x)[2, 1], net(x[2, 1]))


def test_mlp_without_hidden_layers_is_one_affine_map():
    torch.manual_seed(0)
    net = mlp(4, (), 3)
    x, y = torch.randn(10, 4), torch.randn(10, 4)
    # Affine: f(a x + (1 - a) y) = a f(x) + (1 - a) f(y), which a ReLU network breaks.
    torch.testing.assert_close(net(0.3 * x + 0.7 * y), 0.3 * net(x) + 0.7 * net(y))
    assert sum(p.numel() for p in net.parameters()) == 4 * 3 + 3


@pytest.mark.parametrize("depth", [0, 1, 2, 4])
def test_conv_sizes_are_the_sizes_torch_convolutions_give(depth):
    """For every side 1..40, the listed sizes are those a stack of the encoder's stride-2
    convolutions produces, each ceil(n / 2)."""
    conv = nn.Conv2d(1, 1, 3, stride=2, padding=1)
    for size in range(1, 41):
        x = torch.zeros(1, 1, size, size)
        seen = [size]
        for _ in range(depth):
            x = conv(x)
            seen.append(x.shape[-1])
        assert conv_sizes(size, depth) == seen, size
        assert all(b == -(-a // 2) for a, b in zip(seen, seen[1:], strict=False))


@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 7, 9), (3, 4, 6), (2, 13, 5), (1, 28, 28)])
@pytest.mark.parametrize("channels", [(), (4,), (3, 5, 2)])
def test_the_conv_pair_maps_flat_images_to_the_flat_shapes_it_states(shape, channels):
    """The encoder reads [..., C*H*W] and the decoder writes exactly per_pixel*C*H*W numbers
    back for any image size and depth (odd sides need no cropping)."""
    torch.manual_seed(0)
    dim = shape[0] * shape[1] * shape[2]
    encoder = ConvEncoder(shape, channels, (8,), 5)
    decoder = ConvDecoder(3, shape, channels, (8,), per_pixel=2)
    assert encoder(torch.rand(2, 3, dim)).shape == (2, 3, 5)
    assert decoder(torch.randn(2, 3, 3)).shape == (2, 3, 2 * dim)
    assert decoder(torch.randn(3)).shape == (2 * dim,)


def test_an_unknown_decoder_layout_is_refused():
    with pytest.raises(ValueError, match="layout must be one of parameter-major, parameter-minor"):
        ConvDecoder(3, (1, 4, 4), (2,), (), layout="channels-last")


def test_the_encoder_sees_each_image_as_an_image():
    """Row-major C x H x W: a change in one pixel reaches the first conv layer's output only
    within that pixel's 3x3 neighbourhood (stride 2: output cells h // 2 +- 1)."""
    torch.manual_seed(0)
    encoder = ConvEncoder((2, 6, 8), (4,), (), 3)
    x = torch.rand(1, 96)
    bumped = x.clone()
    bumped[0, 1 * 48 + 4 * 8 + 6] += 1.0  # channel 1, row 4, column 6
    first = encoder.features[0]
    changed = (first(bumped.reshape(1, 2, 6, 8)) != first(x.reshape(1, 2, 6, 8))).any(1)[0]
    rows, cols = torch.nonzero(changed, as_tuple=True)
    assert set(rows.tolist()) == {2} and set(cols.tolist()) == {3}  # (4, 6) -> cell (2, 3)
