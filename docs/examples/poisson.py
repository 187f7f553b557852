"""A new observation model in one file: Poisson counts, x_d ~ Poisson(exp(decoder(z)_d)).

Importing this module registers it as ``poisson``: ``elbokit.VAE(likelihood="poisson")``,
and, from an installed package that lists this module under the entry-point group
``elbokit.components``, ``elbokit fit --likelihood poisson``.
"""

import numpy as np
import torch
from torch import distributions as D

from elbokit.errors import DataError, describe_rows
from elbokit.likelihoods import LIKELIHOODS, ObservationModel


@LIKELIHOODS.register("poisson", help="counts 0, 1, 2, ... (one log-rate per feature)")
class Poisson(ObservationModel):
    """x_d ~ Poisson(exp(params_d)): the decoder outputs one log-rate per feature."""

    def forward(self, params: torch.Tensor) -> D.Distribution:  # params: [..., dim]
        # validate_args=False: the log-probability of any x is asked for; check() vouches for x.
        return D.Independent(D.Poisson(params.exp(), validate_args=False), 1)

    @classmethod
    def check(cls, x: np.ndarray, where: str) -> None:  # x: [n, dim]
        bad = ~np.all((x >= 0) & (x == np.round(x)), axis=1)
        if bad.any():
            raise DataError(f"{where}: the Poisson likelihood needs counts, but "
                            f"{describe_rows(bad)} have other values")
