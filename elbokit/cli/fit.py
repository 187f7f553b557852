"""``elbokit fit``: train a VAE, checkpoint every epoch, print a summary table.

Under ``torchrun --nproc-per-node N -m elbokit fit ...`` (N > 1) the N processes train one
model data-parallel (see :mod:`elbokit.distributed`): every rank reads the data and checks the
options, rank 0 alone creates the run directory, writes every file and prints; a failure on
rank 0 before training ends the others too (one line, from rank 0).
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import sys
import time
from dataclasses import fields
from pathlib import Path

from .. import bounds, distributed, estimators, plugins, workflows
from ..api import MODEL_KINDS, VAE, LatentModel, Mixture
from ..checkpoint import has_checkpoint
from ..data.stream import DEFAULT_BUDGET, parse_size
from ..errors import ConfigError, ElbokitError
from ..likelihoods import LIKELIHOODS, Gaussian
from ..models.latents import latent_help
from ..models.vae import ARCHITECTURES
from ..nets import ACTIVATIONS
from ..training import DEFAULT_EPOCHS, LR_SCHEDULES, TrainConfig, TrainingInterrupted
from .common import (
    MAX_FLOAT_OPTION,
    SCORE_HEADERS,
    add_header_option,
    diagnostics_lines,
    format_table,
    fraction,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
    score_note,
    score_row,
    seed,
    widths,
)


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help="train a model by maximizing the ELBO",
                       description="Train a VAE (Gaussian, categorical or Bernoulli latent) on a "
                       "data set by maximizing the ELBO (or the IWAE bound), checkpointing "
                       "every epoch.")
    add_options(p)
    o = p.add_argument_group("output")
    o.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="run directory (default runs/fit-YYYYmmdd-HHMMSS)")
    o.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint")
    o.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")


def add_options(p: argparse.ArgumentParser, sweep: bool = False) -> None:
    """The options of one training run (``elbokit sweep`` shares them, bar ``--beta``)."""
    d = p.add_argument_group("data")
    d.add_argument("--data", default="digits", metavar="NAME|PATH",
                   help="a named data set (see `elbokit datasets`) or a .npy/.npz/.csv/.tsv "
                   "file of shape [examples, features] (default: digits)")
    add_header_option(d)
    d.add_argument("--binarize", nargs="?", const=0.5, type=binarization, metavar="THRESHOLD|dynamic",
                   help="map values > THRESHOLD to 1, others to 0 (default threshold 0.5); "
                   "dynamic: values in [0, 1] are probabilities, a fresh 0/1 draw per training "
                   "batch and one fixed draw (seed 0) for evaluation (MNIST as in Burda et al.)")
    d.add_argument("--test-fraction", type=fraction, default=0.2,
                   help="share of examples held out for testing (default 0.2)")
    d.add_argument("--val-fraction", type=fraction, default=0.1,
                   help="share of the rest used for early stopping (default 0.1)")
    if not sweep:
        d.add_argument("--stream", action="store_true",
                       help="data larger than memory: read the .npy file --data in shuffled "
                       "chunks within --ram-budget instead of loading it (test and validation "
                       "rows: the fractions, each at most a sixteenth of the budget)")
        d.add_argument("--ram-budget", type=ram_budget, default=None, metavar="SIZE",
                       help="with --stream: bytes of file data held at once, e.g. 512M, 2G "
                       f"(default {DEFAULT_BUDGET}); Python and torch come on top")
    m = p.add_argument_group("model")
    m.add_argument("--model", default="vae", metavar="vae|mixture|PATH.py:Class|module:Class",
                   help="; ".join(f"{name}: {MODEL_KINDS.help(name)}" for name in MODEL_KINDS)
                   + " (default vae)")
    m.add_argument("--model-options", type=json_object, default=None, metavar="JSON",
                   help="a user's --model: options its class is built with, besides dim=<the "
                   "data's width>, e.g. '{\"latent_dim\": 4}'")
    m.add_argument("--components", type=positive_int, default=10,
                   help="mixture: number of components K (10)")
    m.add_argument("--fit", default="em", choices=Mixture.fits,
                   help="mixture: EM, or gradient ascent on the exact log-likelihood (em)")
    m.add_argument("--max-iter", type=positive_int, default=200, help="mixture EM: iterations (200)")
    m.add_argument("--n-init", type=positive_int, default=1,
                   help="mixture EM: starts from seeds SEED, SEED+1, ...; the best is kept (1)")
    m.add_argument("--latent-dim", type=positive_int, default=8,
                   help="dimensions of a Gaussian z (8); same as --latent gaussian:N")
    m.add_argument("--latent", default=None, metavar="SPEC",
                   help=f"latent space: {latent_help()}")
    m.add_argument("--likelihood", default="auto", choices=("auto", *LIKELIHOODS.names()),
                   help=f"observation model p(x|z): {LIKELIHOODS.describe()}; auto: bernoulli "
                   "for 0/1 data, else gaussian (default auto)")
    m.add_argument("--gaussian-scale", default="dim", choices=Gaussian.scales,
                   help="gaussian variance: one per dimension, one shared, or from the decoder "
                   "(default dim)")
    m.add_argument("--hidden", type=widths, default=(256, 256), metavar="W1,W2,...",
                   help="hidden layer widths of the encoder; the decoder mirrors them (256,256); "
                   "conv: the dense layers after the convolutions")
    m.add_argument("--encoder", default="auto", choices=("auto", *ARCHITECTURES),
                   help="mlp: the --hidden layers; conv: two stride-2 convolutions (32, 64 "
                   "channels) before them, for images; auto: the --decoder's architecture "
                   "(default auto)")
    m.add_argument("--decoder", default="mlp", choices=ARCHITECTURES,
                   help="mlp: the --hidden layers mirrored; linear + gaussian likelihood is "
                   "probabilistic PCA; conv: the --hidden layers, then two transposed "
                   "convolutions back to the image size (default mlp)")
    m.add_argument("--image-shape", type=image_shape, default=None, metavar="HxW|CxHxW",
                   help="conv: the images the rows hold, channels first (default: the data "
                   "set's own, e.g. 28x28, or SxS when a row has S*S values)")
    m.add_argument("--activation", default="relu", choices=tuple(ACTIVATIONS),
                   help="nonlinearity of the hidden layers (default relu)")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=positive_int, default=None,
                   help=f"maximum epochs (default {DEFAULT_EPOCHS}; early stopping usually ends "
                   "a run sooner); with --resume: extend the run to N in all (at least the epochs "
                   "it has trained; as many: nothing is trained, the run is finalized again) or, "
                   "omitted, the run's own")
    t.add_argument("--batch-size", type=positive_int, default=128,
                   help="examples per gradient step (default 128)")
    t.add_argument("--lr", type=positive_float, default=None,
                   help="Adam learning rate (default: 1e-2 for a VAE whose encoder and decoder "
                   "are linear and for a mixture's gradient fit, else 1e-3)")
    if not sweep:
        t.add_argument("--beta", type=nonnegative_float, default=1.0,
                       help="weight of the KL term in the objective; the reported ELBO uses 1 "
                       "(default 1)")
    t.add_argument("--kl-warmup", type=nonnegative_int, default=0, metavar="EPOCHS",
                   help="raise the KL weight linearly from 0 to --beta over the first EPOCHS (0)")
    t.add_argument("--free-bits", type=nonnegative_float, default=0.0, metavar="NATS",
                   help="free bits: each latent dimension's first NATS of (batch-mean) KL cost "
                   "no gradient (0; reparameterized ELBO only)")
    t.add_argument("--n-samples", type=positive_int, default=1,
                   help="samples of z per example for the ELBO's reconstruction term (default 1)")
    t.add_argument("--iwae-k", type=positive_int, default=None, metavar="K",
                   help="train on the importance-weighted bound IWAE_K instead of the ELBO")
    t.add_argument("--kl", default="auto", choices=("auto", "analytic", "mc"),
                   help="closed-form KL when registered (auto), always, or Monte Carlo")
    t.add_argument("--estimator", default="auto", choices=estimators.NAMES,
                   help="gradient estimator; auto: reparameterize a Gaussian z, enumerate a "
                   f"discrete z with <= {bounds.TRAINING_LIMIT} values, else gumbel-st "
                   "(default auto)")
    t.add_argument("--temperature", type=positive_float, default=1.0,
                   help="gumbel: initial temperature (1.0)")
    t.add_argument("--min-temperature", type=positive_float, default=0.5,
                   help="gumbel: temperature floor (0.5)")
    t.add_argument("--anneal-rate", type=nonnegative_float, default=1e-4,
                   help="gumbel: tau = max(floor, tau0 exp(-rate * step)) (1e-4)")
    t.add_argument("--baseline", default="both", choices=estimators.Reinforce.baselines,
                   help="reinforce: moving-average (mean) and/or learned baseline (both)")
    t.add_argument("--patience", type=nonnegative_int, default=10,
                   help="stop after N epochs without a better validation objective (0: never) "
                   "(default 10)")
    t.add_argument("--lr-schedule", default="plateau", choices=LR_SCHEDULES,
                   help="plateau: multiply the learning rate by --lr-factor after --lr-patience "
                   "epochs without a better validation objective (the training objective when "
                   "there is no validation split); constant: never (plateau)")
    t.add_argument("--lr-patience", type=positive_int, default=3, metavar="N",
                   help="epochs without improvement before the learning rate drops (3)")
    t.add_argument("--lr-factor", type=open_unit, default=0.5, metavar="F",
                   help="factor of each learning-rate drop, in (0, 1) (0.5)")
    t.add_argument("--min-lr", type=nonnegative_float, default=1e-6,
                   help="the learning rate never drops below this (1e-6)")
    t.add_argument("--tolerance", type=nonnegative_float, default=1e-5,
                   help="an improvement counts (for --patience and --lr-patience) when it "
                   "exceeds this fraction of the best value so far (1e-5)")
    t.add_argument("--ema", type=unit_interval, default=0.999, metavar="DECAY",
                   help="validate, keep and return an exponential moving average of the "
                   "weights with this decay per step (Polyak averaging; 0: the weights "
                   "themselves) (0.999)")
    t.add_argument("--seed", type=seed, default=0,
                   help="seeds the split, the initial weights, the batches and the samples of z; "
                   "the same seed and options give the same run on one machine (default 0)")
    t.add_argument("--on-nan", default="rollback", choices=("rollback", "stop"),
                   help="a NaN or infinite loss or gradient (never stepped): roll back to the "
                   "last good epoch and halve the learning rate, at most --max-retries times, "
                   "or stop with the last good checkpoint (rollback)")
    t.add_argument("--max-retries", type=nonnegative_int, default=5, metavar="N",
                   help="rollbacks allowed per run with --on-nan rollback (5)")
    t.add_argument("--dtype", default="float32", choices=("float32", "float64"),
                   help="floating-point type of the weights and the computation (default float32)")
    if not sweep:
        t.add_argument("--device", default=None, choices=distributed.DEVICES,
                       help="where to train: cpu (default) or cuda (under torchrun: "
                       "cuda:LOCAL_RANK); with --resume: the run's own unless given")
        t.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                       help="run the training step through torch.compile (default off; with "
                       "--resume: as the run was started)")
    o = p.add_argument_group("evaluation and report")
    o.add_argument("--eval-k", type=positive_int, default=1000,
                   help="importance samples for the final log p(x) estimate (1000)")
    o.add_argument("--quiet", action="store_true",
                   help="no progress bars (drawn only when stderr is a terminal anyway)")
    o.add_argument("--no-report", action="store_true",
                   help="skip the figures and report.html written at the end")


def json_object(text: str) -> dict:
    """A JSON object (``--model-options``)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON ({e.msg} at character {e.pos}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object {{...}}, got {text!r}")
    return value


def image_shape(text: str) -> tuple[int, int, int]:
    """``--image-shape``: ``28x28`` -> (1, 28, 28); ``3x32x32`` -> (3, 32, 32)."""
    parts = text.lower().split("x")
    try:
        values = tuple(positive_int(part) for part in parts)
    except argparse.ArgumentTypeError:
        values = ()
    if len(values) not in (2, 3):
        raise argparse.ArgumentTypeError(f"{text!r} is not an image shape like 28x28 or 1x28x28")
    return values if len(values) == 3 else (1, *values)  # type: ignore[return-value]


def ram_budget(text: str) -> int:
    """``--ram-budget``: ``512M``, ``2G``, ... in bytes."""
    try:
        return parse_size(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def binarization(text: str) -> float | str:
    """``--binarize``: a threshold, or ``dynamic``."""
    if text == "dynamic":
        return text
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not abs(value) <= MAX_FLOAT_OPTION:  # NaN would binarize everything to 0
        raise argparse.ArgumentTypeError(f"expected a finite threshold or 'dynamic', got {text!r}")
    return value


def training_options(args: argparse.Namespace) -> dict:
    """The facades' training parameters from the options: every field of
    :class:`~elbokit.training.TrainConfig` the command line has (one declaration), and
    those of the estimator around the loop (validation split, precision, device)."""
    names = {f.name for f in fields(TrainConfig)} | {"val_fraction", "dtype"}
    options = {name: getattr(args, name) for name in names if hasattr(args, name)}
    options["epochs"] = args.epochs or DEFAULT_EPOCHS  # None: the default, or a run's own
    options["patience"] = args.patience or None  # 0: never stop early
    options["device"] = getattr(args, "device", None) or "cpu"
    options["compile"] = bool(getattr(args, "compile", None))
    return options


def open_unit(text: str) -> float:
    """A float strictly between 0 and 1."""
    value = positive_float(text)
    if not value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}")
    return value


def unit_interval(text: str) -> float:
    """A float in [0, 1)."""
    value = nonnegative_float(text)
    if not value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def _estimator(args: argparse.Namespace) -> LatentModel:
    """The model the options describe, its options checked before any data is read."""
    training = training_options(args)
    if args.model not in ("vae", "mixture"):  # a user's model: PATH.py:Class, module:Class, plugin
        model = LatentModel(plugins.normalize(args.model), model_options=args.model_options,
                            **training)
        model.train_config()  # refuse impossible training options before reading any data
    elif args.model_options is not None:
        raise ConfigError(f"--model-options configure a user's --model PATH.py:Class; "
                          f"--model {args.model} takes its own options")
    elif args.model == "mixture":
        if args.gaussian_scale == "dim" and args.likelihood in ("auto", "gaussian"):
            args.gaussian_scale = "decoder"  # a diagonal covariance per component
        training["lr"] = args.lr or 1e-2  # a mixture's gradient fit: its own default rate
        mixture_params = set(inspect.signature(Mixture).parameters)
        model = Mixture(n_components=args.components, likelihood=args.likelihood,
                        gaussian_scale=args.gaussian_scale, fit=args.fit, n_init=args.n_init,
                        max_iter=args.max_iter,
                        **{k: v for k, v in training.items() if k in mixture_params})
    else:
        model = VAE(latent_dim=args.latent_dim, latent=args.latent, hidden=args.hidden,
                    likelihood=args.likelihood, gaussian_scale=args.gaussian_scale,
                    encoder=args.encoder, decoder=args.decoder, activation=args.activation,
                    dynamic_binarization=args.binarize == "dynamic",
                    image_shape=getattr(args, "image_shape", None), **training)
        model.train_config()  # refuse impossible training options before reading any data
        model.latent_spec()
    model.torch_device()  # --device cuda without CUDA: one line, exit 2
    return model


def run(args: argparse.Namespace) -> int:
    """Train, evaluate, write the run. Under torchrun (several processes) every rank runs
    this; errors are raised on every rank, and printed by rank 0 only. Ctrl-C: exit status
    130 and one line saying what is saved and how to continue."""
    try:
        return _run(args)
    except KeyboardInterrupt as e:
        if distributed.launched_rank() == 0:
            print(interrupted_message(getattr(args, "run_dir", None), e), file=sys.stderr)
        return 130
    except ElbokitError:
        if distributed.launched_rank() > 0:
            return 2  # bad input: every rank sees the same; rank 0 says it, once
        raise
    except OSError as e:
        rank = distributed.launched_rank()
        if rank > 0:  # a file problem may be this rank's alone: say which rank
            print(f"elbokit: error (rank {rank}): {e}", file=sys.stderr)
            return 2
        raise
    finally:
        distributed.shutdown()


def interrupted_message(out: Path | None, error: KeyboardInterrupt) -> str:
    """The one line printed when Ctrl-C ends ``elbokit fit``: what is saved, how to go on."""
    if out is None or not (out / "config.json").exists():
        return "elbokit: interrupted before the run directory was written; nothing to resume"
    if isinstance(error, TrainingInterrupted) and error.checkpointed:
        saved = f"training stopped {error.where}, checkpointed"
    elif has_checkpoint(out):
        saved = "the last finished epoch is checkpointed"
    else:
        saved = "no epoch had finished"
    return f"elbokit: interrupted; {saved} in {out}; continue with: elbokit fit --out {out} --resume"


def _run(args: argparse.Namespace) -> int:
    out: Path = args.out or Path("runs") / time.strftime("fit-%Y%m%d-%H%M%S")
    args.run_dir = out  # for run()'s message on Ctrl-C
    if args.resume:
        if args.overwrite:
            raise ConfigError("--resume and --overwrite contradict each other")
        if args.model_options is not None:
            raise ConfigError("--model-options are the run's own on --resume; leave them out")
        model = args.model if args.model not in ("vae", "mixture") else None
        result = workflows.resume_run(out, epochs=args.epochs, device=getattr(args, "device", None),
                                      compile=getattr(args, "compile", None), model=model,
                                      eval_k=args.eval_k, write_report=not args.no_report,
                                      notify=print)
    else:
        result = workflows.fit_run(_estimator(args), args.data, out, binarize=args.binarize,
                                   header=args.header, test_fraction=args.test_fraction,
                                   stream=getattr(args, "stream", False),
                                   ram_budget=getattr(args, "ram_budget", None),
                                   eval_k=args.eval_k, write_report=not args.no_report,
                                   overwrite=args.overwrite, notify=print)
    if result is None:  # a rank other than 0 under torchrun: rank 0 prints
        return 0
    print_run(result)
    return 0


def print_run(result: workflows.Run) -> None:
    """What ``elbokit fit`` prints about a finished run: the scores, the diagnostics, where
    the report and the run are."""
    summary, run_data = result.summary, result.data
    rows = [score_row(s, scores) for s, scores in summary["splits"].items()]
    print(format_table(SCORE_HEADERS, rows))
    print(f"({score_note(next(iter(summary['splits'].values())))})")
    if run_data.stream is not None:
        print(f"(streamed: trained on {len(run_data.stream)} rows of {run_data.stream.where} read in "
              f"chunks of at most {run_data.stream.chunk_rows}; the train row scores a sample of "
              f"{len(run_data.splits['train'])} of them)")
    for line in diagnostics_lines(summary["diagnostics"], summary["diagnostics"]["split"]):
        print(line, file=sys.stderr if line.startswith("warning") else sys.stdout)
    if result.report_path is not None:
        print(f"report: {result.report_path}")
    if "adjusted_rand_index" in summary:
        print(f"components vs labels on the test split: adjusted Rand index "
              f"{summary['adjusted_rand_index']:.3f} (1 = the classes exactly, 0 = chance)")
    print(f"run directory: {result.path}")
