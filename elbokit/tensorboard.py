"""TensorBoard event files of a training run: what ``elbokit fit --tensorboard`` (and a facade's
``tensorboard=True``, e.g. ``VAE(tensorboard=True).fit(X, run_dir=...)``) writes into
``RUN/tensorboard/``, one step per epoch (step = the epoch's number, from 1):

    scalars  elbo/train, elbo/validation, reconstruction/train, reconstruction/validation,
             kl/train, kl/validation   the epoch's record, as metrics.jsonl holds it
             learning_rate             the rate after the epoch (the schedule's decision made)
             beta                      the KL weight reached, with --kl-warmup
             kl_per_dimension/I        mean KL(q(z_I | x) || p(z_I)) over the validation
                                       rows (nats; they sum to kl/validation), or the first
                                       1,024 training rows without validation
    images   samples                   E[x | z] for 64 draws z ~ p(z), the same z every epoch
             reconstructions           16 validation rows, each row of 8 above their
                                       reconstructions E[x | z = E_q[z | x]]
    text     images, kl_per_dimension  why they are not logged, when they are not (data that
                                       are not images; no closed-form KL per variable)

The scalars are the trainer's own record of the epoch (:class:`elbokit.training.Trainer`, the
numbers of ``metrics.jsonl``, not computed again); the KL per variable is
:func:`elbokit.diagnostics.kl_per_dimension`, which the run's summary and report use; the
images are the facade's :meth:`~elbokit.api.LatentModel.sample` and
:meth:`~elbokit.api.LatentModel.reconstruct`. All of them describe the model as it was
validated (the averaged weights, see ``--ema``), and none draws from the training stream of
random numbers: logging changes no number of the run.

Images need the rows' image shape: the model's own (a VAE's ``image_shape``, given or a conv
VAE's inferred one), else the data set's (``(H, W)``, e.g. the digits' 8 x 8 or MNIST's 28 x 28), which
:func:`elbokit.workflows.fit_run` tells the facade with :func:`image_rows`; rows of a table,
or of an array without a shape, get a text entry saying so instead.

The ``tensorboard`` package is optional (``pip install 'elbokit[tensorboard]'``) and imported
here only when asked for: :func:`require` says in one line how to install it.

Resuming: each training session opens a new event file whose first event asks TensorBoard to
drop the steps from its first epoch on (``purge_step``): epochs a killed session logged after
its last checkpoint are trained again and appear once, with the numbers the run kept. Under
torchrun only rank 0 writes (the trainer calls the log on rank 0 only).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from . import diagnostics
from .errors import ConfigError

if TYPE_CHECKING:
    from .models.base import LatentVariableModel

DIRECTORY = "tensorboard"  # below the run directory
INSTALL = "pip install 'elbokit[tensorboard]'"
SAMPLES = 64  # E[x | z] for this many z ~ p(z), 8 to a row
SHOWN = 16  # validation rows shown beside their reconstructions
COLUMNS = 8  # images per row of a grid (torch's make_grid)
SAMPLE_SEED = 0  # the z of the samples image: the same every epoch, so a change is the model's
KL_ROWS = 1024  # training rows the KL per variable is averaged over when there is no validation

_IMAGE_ROWS: contextvars.ContextVar[tuple[int, ...] | None] = contextvars.ContextVar(
    "elbokit_tensorboard_image_rows", default=None)


def summary_writer() -> type:
    """torch's ``SummaryWriter``, imported now; without the tensorboard package a one-line
    :class:`~elbokit.errors.ConfigError` saying how to install it."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(f"--tensorboard needs the tensorboard package: {INSTALL}") from None
    return SummaryWriter


def require(estimator: Any) -> None:
    """Refuse, in one line and before anything is written, a ``tensorboard=True`` that cannot
    be honoured: the package is missing, or a mixture fitted by EM (which has no epochs)."""
    if getattr(estimator, "fit_method", None) == "em":
        raise ConfigError("--tensorboard logs the epochs of gradient training; a mixture fitted "
                          "by EM has none: add --fit gradient (EM's log-likelihood per iteration "
                          "is in metrics.jsonl)")
    summary_writer()


def epoch_log(estimator: Any, run_dir: Path | None, x: Any,
              x_val: torch.Tensor | None) -> EpochLog | None:
    """The trainer's ``on_epoch`` for a facade's fit: an :class:`EpochLog` when the facade
    asks for one (``tensorboard=True``), else None. ``x``: the training rows (a tensor, or a
    stream), ``x_val``: the validation rows, both as the trainer takes them. Refused in one
    line without a run directory to write into, or as :func:`require` refuses."""
    if not getattr(estimator, "tensorboard", False):
        return None
    if run_dir is None:
        raise ConfigError("tensorboard=True writes its event files into the run directory: "
                          "pass fit(..., run_dir=DIR)")
    require(estimator)
    if x_val is not None and len(x_val):
        rows = x_val
    else:
        rows = x[:KL_ROWS] if isinstance(x, torch.Tensor) else None
    return EpochLog(estimator, run_dir, rows)


@contextlib.contextmanager
def image_rows(shape: Sequence[int] | None) -> Iterator[None]:
    """Within the block, the rows a facade fits are images of ``shape`` (``(H, W)`` or
    ``(C, H, W)``; None: not known to be images). The run workflow says so around its fit:
    it knows its data set's shape, which an array of rows does not carry."""
    token = _IMAGE_ROWS.set(tuple(int(s) for s in shape) if shape else None)
    try:
        yield
    finally:
        _IMAGE_ROWS.reset(token)


def image_shape(module: torch.nn.Module, dim: int) -> tuple[tuple[int, int, int] | None, str]:
    """``((C, H, W), "")`` of the rows of ``dim`` values that ``module`` models, or
    ``(None, why not)``: the model's own shape (a conv VAE's ``config.image_shape``), else
    the data's (:func:`image_rows`) when it is ``(H, W)`` or ``(C, H, W)``."""
    own = getattr(getattr(module, "config", None), "image_shape", None)
    shape = tuple(own) if own is not None else _IMAGE_ROWS.get()
    if shape is None:
        return None, ("the rows are not known to be images (a table, or an array of "
                      "[examples, features]; a facade's VAE takes image_shape=(H, W))")
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3 or math.prod(shape) != dim or shape[0] not in (1, 3):
        return None, (f"the data's shape {list(shape)} is not one grey or RGB image of {dim} "
                      "values, channels first (give --image-shape CxHxW)")
    return (int(shape[0]), int(shape[1]), int(shape[2])), ""


def _in_unit_range(*arrays: np.ndarray) -> list[np.ndarray]:
    """Grey values in [0, 1] for TensorBoard: the arrays as they are when they lie in [0, 1]
    (probabilities and intensities: a faint image stays faint), else mapped from their
    common range, as the report's figures draw them."""
    lo = min(float(a.min()) for a in arrays)
    hi = max(float(a.max()) for a in arrays)
    if lo >= 0 and hi <= 1:
        return list(arrays)
    span = hi - lo if hi > lo else 1.0
    return [(a - lo) / span for a in arrays]


class EpochLog:
    """The event files of one training session of ``estimator`` (a facade, whose
    ``module_`` the trainer trains in place) in ``run_dir/tensorboard``: called by the
    trainer as ``log(record, module)`` after every epoch (its ``on_epoch``), with the model
    as it was validated. ``rows``: ``[m, dim]`` on the model's device, the validation rows
    (else the first :data:`KL_ROWS` training rows) that the KL per variable and the
    reconstructions are computed on; None (streamed data without validation rows): neither
    is logged. The writer opens at the first epoch logged, with ``purge_step`` at that epoch
    (see the module docstring); :meth:`close` flushes and closes it."""

    def __init__(self, estimator: Any, run_dir: str | Path, rows: torch.Tensor | None) -> None:
        self.estimator = estimator
        self.path = Path(run_dir) / DIRECTORY
        self.rows = self.rows_for_kl = rows
        self.writer: Any = None

    def _open(self, epoch: int, module: torch.nn.Module) -> None:
        """The writer, and a text entry for each thing this session does not log, and why."""
        self.writer = summary_writer()(log_dir=str(self.path), purge_step=epoch)
        self.shape, why = image_shape(module, self.estimator._width(module))
        no_rows = "no rows to compute it on (streamed data without a validation split)"
        model = cast("LatentVariableModel", module)  # the trainer's model speaks the protocol
        if self.rows is None:
            self.writer.add_text("kl_per_dimension", f"No KL per latent variable: {no_rows}.",
                                 epoch)
        elif diagnostics.kl_per_dimension(model, self.rows[:1]) is None:
            self.writer.add_text("kl_per_dimension", "No KL per latent variable: this model's "
                                 "posterior and prior have no closed-form KL per variable (a "
                                 "flow posterior, a mixture or VampPrior prior, two stochastic "
                                 "layers).", epoch)
            self.rows_for_kl = None
        if self.shape is None:
            self.writer.add_text("images", f"No images: {why}.", epoch)
        elif self.rows is None:
            self.writer.add_text("images", f"No reconstructions: {no_rows}.", epoch)

    @torch.no_grad()
    def __call__(self, record: dict, module: torch.nn.Module) -> None:
        epoch = int(record["epoch"])
        if self.writer is None:
            self._open(epoch, module)
        add = self.writer.add_scalar
        for split, name in (("train", "train"), ("val", "validation")):
            for term, value in record.get(split, {}).items():
                add(f"{term}/{name}", value, epoch)
        add("learning_rate", record["lr"], epoch)
        if "beta" in record:
            add("beta", record["beta"], epoch)
        if self.rows_for_kl is not None:  # a closed form per variable (checked on opening)
            kl = diagnostics.kl_per_dimension(cast("LatentVariableModel", module), self.rows_for_kl)
            assert kl is not None
            width = len(str(len(kl) - 1))  # zero-padded: TensorBoard sorts the tags as text
            for i, value in enumerate(kl.double().tolist()):
                add(f"kl_per_dimension/{i:0{width}d}", value, epoch)
        if self.shape is not None:
            self._images(epoch)
        self.writer.flush()  # TensorBoard shows the epoch now, not minutes later

    def _images(self, epoch: int) -> None:
        """The samples and (with rows, for a model with codes) the reconstructions."""
        estimator, (c, h, w) = self.estimator, self.shape
        (drawn,) = _in_unit_range(estimator.sample(SAMPLES, seed=SAMPLE_SEED, mean=True))
        self.writer.add_images("samples", drawn.reshape(-1, c, h, w), epoch, dataformats="NCHW")
        # What is shown follows what the model can do (as the report's figures): a posterior
        # over components (a mixture) has no code to reconstruct from.
        if self.rows is None or hasattr(estimator, "predict_proba"):
            return
        shown = self.rows[:SHOWN].double().cpu().numpy()
        original, rebuilt = _in_unit_range(shown, estimator.reconstruct(shown))
        width = -(-len(shown) // COLUMNS) * COLUMNS  # a short last row filled with black
        original, rebuilt = (np.pad(a, ((0, width - len(a)), (0, 0))) for a in (original, rebuilt))
        pairs = []  # rows of COLUMNS originals, each above their reconstructions
        for start in range(0, width, COLUMNS):
            pairs += [original[start:start + COLUMNS], rebuilt[start:start + COLUMNS]]
        grid = np.concatenate(pairs).reshape(-1, c, h, w)
        self.writer.add_images("reconstructions", grid, epoch, dataformats="NCHW")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
