"""The Gaussian-latent variational autoencoder (Kingma & Welling 2014).

    p(z) = N(0, I)          p(x | z) = observation model(decoder(z))
    q(z | x) = N(mu(x), diag sigma(x)^2)   (the encoder)

or, with a discrete latent space (:mod:`elbokit.models.latents`), categorical or Bernoulli
codes with a uniform prior and an encoder that outputs their logits.

With ``encoder="conv"`` / ``decoder="conv"`` the networks are convolutional (images: see
:class:`VAEConfig` and :mod:`elbokit.nets`); everything else is unchanged.

A Gaussian z can have a richer prior (``prior``: "mog:K", "vamp:K", :mod:`.priors`), a
flow posterior (``posterior``: "iaf:S", :mod:`.flows`) and a second stochastic layer
(``stochastic_layers=2``, :mod:`.hierarchy`: z = [z1, z2], p(z2) p(z1|z2) p(x|z1,z2) and
q(z2|x) q(z1|x,z2)); each returns a distribution, so the bounds need nothing new.

With ``decoder="linear"`` and a Gaussian likelihood with one shared variance this is
probabilistic PCA (Tipping & Bishop 1999), whose marginal likelihood is known in closed
form: :meth:`VAEModule.linear_gaussian_marginal` returns it, a ground truth for the bounds.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import cast

import torch
from torch import distributions as D
from torch import nn

from ..errors import ConfigError
from ..likelihoods import Gaussian, ObservationModel, build_likelihood
from ..nets import ACTIVATIONS, ConvDecoder, ConvEncoder, mlp
from .flows import PosteriorSpec
from .hierarchy import JointInput, TwoLayerPosterior, TwoLayerPrior
from .latents import LatentSpec
from .priors import PriorSpec

ARCHITECTURES = ("mlp", "linear", "conv")
CONV_CHANNELS = (32, 64)  # the default channel widths of the two stride-2 convolutions


def infer_image_shape(dim: int) -> tuple[int, int, int] | None:
    """``(1, s, s)`` when ``dim = s * s`` (one grey image: 784 -> 28x28, 64 -> 8x8), else None."""
    side = math.isqrt(dim)
    return (1, side, side) if side * side == dim else None


def check_image_shape(shape: object, dim: int) -> tuple[int, int, int]:
    """``(C, H, W)`` from ``(H, W)`` or ``(C, H, W)`` positive integers whose product is
    ``dim``; anything else is a one-line :class:`ConfigError`."""
    try:
        values = tuple(int(s) for s in shape)  # type: ignore[attr-defined]  # not iterable: TypeError
        ok = len(values) in (2, 3) and all(s >= 1 and s == t for s, t in zip(values, shape, strict=True))  # type: ignore[call-overload]
    except (TypeError, ValueError):
        values, ok = (), False
    if not ok:
        raise ConfigError(f"image shape must be (H, W) or (C, H, W) positive integers, not {shape!r}")
    if len(values) == 2:
        values = (1, *values)
    if math.prod(values) != dim:
        raise ConfigError(f"image shape {'x'.join(map(str, values))} has {math.prod(values)} "
                          f"values, but the data has {dim} per example")
    return values  # type: ignore[return-value]


@dataclass
class VAEConfig:
    """Everything needed to rebuild a :class:`VAEModule` (weights aside).

    ``encoder``/``decoder``: ``"mlp"`` (``hidden`` widths; the decoder mirrors them),
    ``"linear"`` (one affine map) or ``"conv"``: for images of ``image_shape`` ``(C, H, W)``
    (``C*H*W == dim``, x the channels-first row-major flattening; inferred as ``(1, s, s)``
    when ``dim = s^2``), stride-2 convolutions of ``conv_channels`` widths (kernel 3, each
    halving H and W) then dense layers of ``hidden`` widths, and the decoder the mirror image
    (dense, then transposed convolutions back to exactly H x W). ``hidden`` keeps its one
    meaning, the dense widths, so ``--encoder conv`` swaps an MLP for a convolutional front
    end of the same dense capacity; ``hidden=()`` is the classic conv VAE (convolutions and
    one linear layer). ``prior``, ``posterior``, ``stochastic_layers``: see the module
    docstring (Gaussian z only). Configs saved before these fields existed load unchanged.
    """

    dim: int
    latent_dim: int = 8
    latent: str = "gaussian"
    categories: int = 2
    hidden: tuple[int, ...] = (256, 256)
    encoder: str = "mlp"
    decoder: str = "mlp"
    activation: str = "relu"
    likelihood: dict = field(default_factory=lambda: {"name": "bernoulli"})
    image_shape: tuple[int, int, int] | None = None
    conv_channels: tuple[int, ...] = CONV_CHANNELS
    prior: str = "standard"
    posterior: str = "diagonal"
    stochastic_layers: int = 1

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        self.conv_channels = tuple(int(c) for c in self.conv_channels)
        if self.dim < 1:
            raise ConfigError(f"data dimension must be >= 1, not {self.dim}")
        self.latent_spec  # noqa: B018 - building it validates kind, size and categories
        if any(h < 1 for h in self.hidden):
            raise ConfigError(f"hidden widths must be >= 1, not {list(self.hidden)}")
        for part in ("encoder", "decoder"):
            if getattr(self, part) not in ARCHITECTURES:
                raise ConfigError(
                    f"{part} must be one of {', '.join(ARCHITECTURES)}, not {getattr(self, part)!r}"
                )
        if self.activation not in ACTIVATIONS:
            raise ConfigError(
                f"activation must be one of {', '.join(ACTIVATIONS)}, not {self.activation!r}"
            )
        if any(c < 1 for c in self.conv_channels):
            raise ConfigError(f"conv channel widths must be >= 1, not {list(self.conv_channels)}")
        self._check_latent_structure()
        if self.image_shape is not None:
            self.image_shape = check_image_shape(self.image_shape, self.dim)
        elif "conv" in (self.encoder, self.decoder):
            # Stored once inferred, so a saved model never depends on inferring it again.
            self.image_shape = infer_image_shape(self.dim)
            if self.image_shape is None:
                raise ConfigError(
                    f"a conv encoder/decoder needs images, and {self.dim} values per example are "
                    "not a square number of pixels: give the image shape (image_shape=(C, H, W), "
                    "--image-shape HxW or CxHxW)")

    def _check_latent_structure(self) -> None:
        """The prior, the posterior and the layers: Gaussian z only; a flow with one layer."""
        prior, posterior = PriorSpec.parse(self.prior), PosteriorSpec.parse(self.posterior)
        self.prior, self.posterior = str(prior), str(posterior)
        if self.stochastic_layers not in (1, 2):
            raise ConfigError(f"stochastic layers must be 1 or 2, not {self.stochastic_layers}")
        richer = [what for what, default in ((f"--prior {prior}", prior.kind == "standard"),
                                             (f"--posterior {posterior}", posterior.kind == "diagonal"),
                                             ("--stochastic-layers 2", self.stochastic_layers == 1))
                  if not default]
        if richer and self.latent != "gaussian":
            raise ConfigError(f"{', '.join(richer)} needs a Gaussian latent, not {self.latent}")
        if self.stochastic_layers == 2 and posterior.kind != "diagonal":
            raise ConfigError("two stochastic layers take the diagonal posterior (a flow on "
                              "q(z2 | x) is not built yet)")
        if self.stochastic_layers == 2 and self.encoder == "conv":
            raise ConfigError("two stochastic layers need an mlp or linear encoder, not conv")

    @property
    def latent_spec(self) -> LatentSpec:
        return LatentSpec(self.latent, self.latent_dim, self.categories)

    def to_dict(self) -> dict:
        return asdict(self) | {"hidden": list(self.hidden), "conv_channels": list(self.conv_channels),
                               "image_shape": list(self.image_shape) if self.image_shape else None}


class VAEModule(nn.Module):
    """A VAE speaking the model protocol. ``x: [batch, dim]``, ``z: [..., latent_dim]``."""

    def __init__(self, config: VAEConfig, observation: ObservationModel | None = None) -> None:
        super().__init__()
        self.config = config
        self.observation = observation or build_likelihood(config.likelihood, config.dim)
        config.likelihood = self.observation.config()
        widths = {"mlp": config.hidden, "linear": ()}
        self.latent = config.latent_spec.build()
        spec = config.latent_spec
        # The encoder sees network_input(x), of input_dim values (a table: one-hot categories
        # and the mask of observed cells; otherwise dim).
        inputs = self.observation.input_dim
        if inputs != config.dim and "conv" in (config.encoder, config.decoder):
            raise ConfigError(f"a conv encoder/decoder reads images; the {self.observation.name} "
                              "likelihood's rows are not (use an mlp or linear one)")
        self.prior_module = PriorSpec.parse(config.prior).build(
            spec.n, inputs, self.observation.input_range)
        self.posterior_module = PosteriorSpec.parse(config.posterior).build(spec.n)
        self.layers = config.stochastic_layers
        # The encoder's outputs: q(z_top | x)'s parameters, then the flow's context (if any).
        self.gaussian_params = spec.n_params
        # Plain attributes read on every step (a submodule's are behind nn.Module.__getattr__).
        self.context_dim = self.posterior_module.context_dim
        self.plain_prior = config.prior == "standard" and self.layers == 1
        encoded = spec.n_params + self.context_dim
        if config.encoder == "conv":
            # image_shape: set (given or inferred) by VAEConfig whenever a network is conv
            self.encoder: nn.Module = ConvEncoder(config.image_shape,  # type: ignore[arg-type]
                                                  config.conv_channels,
                                                  config.hidden, encoded, config.activation)
        else:
            self.encoder = mlp(inputs, widths[config.encoder], encoded, config.activation)
        if self.layers == 2:
            # q(z1 | x, z2) and p(z1 | z2): the same widths as the encoder and decoder.
            self.inference_z1 = JointInput(inputs, spec.n, widths[config.encoder],
                                           spec.n_params, config.activation)
            self.generative_z1 = mlp(spec.n, widths[config.decoder][::-1], spec.n_params,
                                     config.activation)
        if config.decoder == "conv":
            self.decoder: nn.Module = self._conv_decoder()
        else:
            self.decoder = mlp(spec.flat_dim * self.layers, widths[config.decoder][::-1],
                               self.observation.n_params, config.activation)

    def _conv_decoder(self) -> ConvDecoder:
        """The transposed-convolution decoder, with as many outputs per pixel as the
        observation model needs, laid out as it reads them."""
        config, obs = self.config, self.observation
        per_pixel, rest = divmod(obs.n_params, config.dim)
        if rest:
            raise ConfigError(f"a conv decoder needs a whole number of parameters per pixel; the "
                              f"{obs.name} likelihood has {obs.n_params} for {config.dim} values")
        return ConvDecoder(config.latent_spec.flat_dim * self.layers,
                           config.image_shape,  # type: ignore[arg-type]  # set: see __init__
                           config.conv_channels, config.hidden[::-1], per_pixel, config.activation,
                           obs.parameter_layout)

    def describe(self) -> str:
        """One line: the latent space, prior, posterior and observation model (the report's
        header)."""
        config = self.config
        parts = [f"latent {config.latent_spec}"]
        if self.layers == 2:
            parts[0] = f"2 stochastic layers of latent {config.latent_spec}"
        if config.prior != "standard":
            parts.append(f"{config.prior} prior")
        if config.posterior != "diagonal":
            parts.append(f"{config.posterior} posterior")
        return f"VAE ({', '.join(parts)}, {self.observation.name} likelihood)"

    def prior(self) -> D.Distribution:
        """p(z): batch_shape [], event_shape [latent_dim] (categorical: [latent_dim, K]; two
        stochastic layers: [2 * latent_dim], z = [z1, z2])."""
        if self.plain_prior:  # the training step's usual case, in one call
            return self.latent.prior()
        top = self.prior_module.distribution(self.latent, self.gaussian_posterior)
        if self.layers == 1:
            return top
        return TwoLayerPrior(top, self._prior_z1)

    def posterior(self, x: torch.Tensor) -> D.Distribution:
        """q(z | x): batch_shape [batch], event_shape as the prior's."""
        inputs = self.observation.network_input(x)
        encoded = self.encoder(inputs)
        if self.context_dim:
            base = self.latent.posterior(encoded[..., :self.gaussian_params])
            top = self.posterior_module.distribution(base, encoded[..., self.gaussian_params:])
        else:
            top = self.latent.posterior(encoded)
        if self.layers == 1:
            return top
        return TwoLayerPosterior(top, lambda z2: self.latent.posterior(self.inference_z1(inputs, z2)))

    def gaussian_posterior(self, inputs: torch.Tensor) -> D.Distribution:
        """The encoder's Gaussian over the (top) z at encoder inputs ``inputs: [K, dim]``,
        before any flow (the VampPrior's components)."""
        return self.latent.posterior(self.encoder(inputs)[..., :self.gaussian_params])

    def prior_inputs(self) -> torch.Tensor | None:
        """The prior's learned inputs (the VampPrior's pseudo-inputs) as data, ``[K, dim]``;
        None for a prior without them."""
        inputs = getattr(self.prior_module, "pseudo_inputs", None)
        return None if inputs is None else self.observation.from_network_input(inputs())

    def _prior_z1(self, z2: torch.Tensor) -> D.Distribution:
        """p(z1 | z2): ``z2: [..., n]`` -> batch [...], event [n]."""
        return self.latent.posterior(self.generative_z1(z2))

    @property
    def latent_layers(self) -> tuple[int, ...]:
        """The sizes of the stochastic layers within z's flat vector, bottom first."""
        return (self.config.latent_spec.flat_dim,) * self.layers

    def likelihood(self, z: torch.Tensor) -> D.Distribution:
        """p(x | z): ``z: [..., *event]`` -> batch_shape [...], event_shape [dim]."""
        return self.observation(self.decoder(self.latent.flatten(z)))

    def likelihood_log_prob(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x | z) without building the distribution object (the training step's hot
        path): ``z: [..., *event]``, ``x: [batch, dim]`` broadcast -> ``[...]``."""
        return self.observation.log_prob(self.decoder(self.latent.flatten(z)), x)

    def likelihood_table(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x_b | z_s) for all pairs: ``z: [S, *event]``, ``x: [B, dim]`` -> ``[B, S]``.
        The decoder runs once per latent value, not once per (example, value) pair."""
        return self.observation.log_prob_table(self.decoder(self.latent.flatten(z)), x)

    @property
    def support_size(self) -> float:
        """How many values z takes (inf for a Gaussian z)."""
        return self.config.latent_spec.support_size

    def support(self, limit: int) -> torch.Tensor:
        """Every value of a discrete z, ``[S, *event]`` (see :meth:`LatentSpace.support`)."""
        return self.latent.support(limit)

    def decode_mean(self, z: torch.Tensor) -> torch.Tensor:
        """E[x | z]: ``[..., *event] -> [..., dim]``."""
        return self.observation.mean(self.decoder(self.latent.flatten(z)))

    def linear_gaussian_marginal(self) -> D.MultivariateNormal:
        """Exact p(x) = N(b, W W^T + Psi) of a linear decoder with a Gaussian likelihood
        whose variance does not depend on z (probabilistic PCA / factor analysis)."""
        obs = self.observation
        if (self.config.decoder != "linear" or self.config.latent != "gaussian"
                or not isinstance(obs, Gaussian) or obs.scale == "decoder" or self.layers != 1
                or self.config.prior != "standard"):
            raise ConfigError("the marginal is closed-form only for a Gaussian latent, a linear "
                              "decoder and a Gaussian likelihood of scale 'dim' or 'shared'")
        (layer,) = cast("list[nn.Linear]", self.decoder)  # one nn.Linear: decoder "linear"
        # x = shift + unit * (W z + b + sigma * eps): fold the standardization into W and Psi.
        weight = obs.unit[:, None] * layer.weight  # [dim, latent]
        loc = obs.shift + obs.unit * layer.bias
        noise_var = (obs.unit * (obs.log_scale.exp().expand(obs.dim) + obs.min_scale)) ** 2
        covariance = weight @ weight.T + torch.diag(noise_var)
        return D.MultivariateNormal(loc, covariance_matrix=covariance)
