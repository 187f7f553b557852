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

from .. import distributed, evaluation, plugins, workflows
from ..api import MODEL_KINDS, VAE, LatentModel, Mixture, MixtureOptions, VAEOptions
from ..checkpoint import has_checkpoint
from ..data.columns import parse_column_types
from ..data.stream import DEFAULT_BUDGET, parse_size
from ..errors import ConfigError, ElbokitError
from ..training import DEFAULT_EPOCHS, TrainConfig, TrainingInterrupted
from . import COMMANDS
from .common import (
    MAX_FLOAT_OPTION,
    PARSERS,
    SCORE_HEADERS,
    add_header_option,
    add_missing_option,
    diagnostics_lines,
    format_table,
    fraction,
    nonnegative_int,
    positive_int,
    score_note,
    score_row,
)


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help=COMMANDS[name],
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


def column_types(text: str) -> dict[str, str]:
    """``--column-types NAME=TYPE,...|FILE.json`` (see
    :func:`elbokit.data.columns.parse_column_types`), its problems as argparse's."""
    try:
        return parse_column_types(text)
    except ElbokitError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_options(p: argparse.ArgumentParser, sweep: bool = False) -> None:
    """The options of one training run (``elbokit sweep`` shares them, bar ``--beta``)."""
    d = p.add_argument_group("data")
    d.add_argument("--data", default="digits", metavar="NAME|PATH",
                   help="a named data set (see `elbokit datasets`) or a .npy/.npz/.csv/.tsv "
                   "file of shape [examples, features] (default: digits)")
    add_header_option(d)
    add_missing_option(d)
    d.add_argument("--column-types", type=column_types, default=None, metavar="NAME=TYPE,...|FILE.json",
                   help="a table's column types, overriding the inferred ones: real, positive "
                   "(log-normal), poisson, negbin (counts), binary, categorical, or skip (leave the "
                   "column out), e.g. age=real,plan=categorical, or a JSON file of them")
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
    for name, flag in model_flags().items():  # VAEOptions', MixtureOptions' fields, declared there
        m.add_argument(f"--{name.replace('_', '-')}", **flag)
    t = p.add_argument_group("training")
    for name, flag in training_flags(sweep).items():  # TrainConfig's fields, declared there
        t.add_argument(f"--{name.replace('_', '-')}", **flag)
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
    o.add_argument("--eval-k", type=positive_int, default=None, metavar="K",
                   help="importance samples per example for the final log p(x) estimate, IWAE "
                   "and ELBO, on the whole train and test splits (default: exact where z can be "
                   "summed over; else the test split and a sample of 2000 training rows, with "
                   "the k from 50..5000 that fits 15%% of the training time)")
    o.add_argument("--quiet", action="store_true",
                   help="no progress bars (drawn only when stderr is a terminal anyway)")
    o.add_argument("--no-report", action="store_true",
                   help="skip the figures and report.html written at the end")
    if not sweep:
        o.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=None,
                       help="log every epoch for TensorBoard into the run directory's tensorboard/: ELBO, "
                       "reconstruction and KL (train, validation), learning rate, KL per latent "
                       "variable, samples and reconstructions of images; view with tensorboard "
                       "--logdir runs/ (default off; with --resume: as the run was started; "
                       "needs pip install 'elbokit[tensorboard]')")


def json_object(text: str) -> dict:
    """A JSON object (``--model-options``)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON ({e.msg} at character {e.pos}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object {{...}}, got {text!r}")
    return value


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


# Where a training flag differs from its TrainConfig field's declaration
# (elbokit.training.option); training_options() maps these values back.
FLAG_OVERRIDES: dict[str, dict] = {
    "epochs": {"default": None},  # None: DEFAULT_EPOCHS, or on --resume the run's own
    "lr": {"default": None},  # None: the model's own default (VAE.learning_rate; a mixture: 1e-2)
    "patience": {"type": nonnegative_int},  # 0: never stop early (TrainConfig: patience=None)
    "beta": {"sweep": False},  # elbokit sweep sets each member's beta (its own --beta B1,B2,...)
}


def training_flags(sweep: bool = False) -> dict[str, dict]:
    """``add_argument``'s keyword arguments for the training flag of each field of
    :class:`~elbokit.training.TrainConfig` that declares one (:func:`declared_flags`), then
    :data:`FLAG_OVERRIDES`; ``sweep``: those ``elbokit sweep`` has."""
    flags = {}
    for name, flag in declared_flags(TrainConfig).items():
        flag = {**flag, **FLAG_OVERRIDES.get(name, {})}
        if flag.pop("sweep", True) or not sweep:
            flags[name] = {k: v for k, v in flag.items() if v is not None or k == "default"}
    return flags


def model_flags() -> dict[str, dict]:
    """``add_argument``'s keyword arguments for the model flags (``elbokit fit`` and
    ``elbokit sweep`` alike): the mixture's, then the VAE's, as
    :class:`~elbokit.api.MixtureOptions` and :class:`~elbokit.api.VAEOptions` declare them,
    by the flag's argparse name (``components`` for ``n_components``)."""
    return {**declared_flags(MixtureOptions), **declared_flags(VAEOptions)}


def declared_flags(options: type) -> dict[str, dict]:
    """The flags the fields of the dataclass ``options`` declare
    (:func:`elbokit.training.option`), by argparse name (the field's, or its ``flag``): the
    field's default, help, metavar, choices (those two computed now when declared as
    functions) and argument type (named there, :data:`~elbokit.cli.common.PARSERS`)."""
    flags = {}
    for f in fields(options):
        if "cli" not in f.metadata:
            continue
        cli = f.metadata["cli"]
        flag = {"type": PARSERS[cli["parse"]] if cli["parse"] else None, "default": f.default,
                "choices": cli["choices"]() if callable(cli["choices"]) else cli["choices"],
                "metavar": cli["metavar"],
                "help": cli["help"]() if callable(cli["help"]) else cli["help"]}
        flags[cli["flag"] or f.name] = {k: v for k, v in flag.items() if v is not None or k == "default"}
    return flags


def model_parameters(options: type, args: argparse.Namespace) -> dict:
    """The facade's parameters that the flags of ``options`` (:class:`~elbokit.api.VAEOptions`,
    :class:`~elbokit.api.MixtureOptions`) set, from the parsed command line, by field name."""
    names = {f.name: f.metadata["cli"]["flag"] or f.name for f in fields(options) if "cli" in f.metadata}
    return {name: getattr(args, flag) for name, flag in names.items()}


def training_options(args: argparse.Namespace) -> dict:
    """The facades' training parameters from the options: every field of
    :class:`~elbokit.training.TrainConfig` the command line has (one declaration), and
    those of the estimator around the loop (validation split, precision, device, TensorBoard)."""
    names = {f.name for f in fields(TrainConfig)} | {"val_fraction", "dtype"}
    options = {name: getattr(args, name) for name in names if hasattr(args, name)}
    options["epochs"] = args.epochs or DEFAULT_EPOCHS  # None: the default, or a run's own
    options["patience"] = args.patience or None  # 0: never stop early
    options["device"] = getattr(args, "device", None) or "cpu"
    options["compile"] = bool(getattr(args, "compile", None))
    options["tensorboard"] = bool(getattr(args, "tensorboard", None))
    return options


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
        model = Mixture(**model_parameters(MixtureOptions, args), likelihood=args.likelihood,
                        gaussian_scale=args.gaussian_scale,
                        **{k: v for k, v in training.items() if k in mixture_params})
    else:
        model = VAE(**model_parameters(VAEOptions, args),
                    dynamic_binarization=args.binarize == "dynamic", **training)
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
        if args.missing is not None or args.column_types is not None:
            raise ConfigError("--missing and --column-types are the run's own on --resume; "
                              "leave them out")
        model = args.model if args.model not in ("vae", "mixture") else None
        result = workflows.resume_run(out, epochs=args.epochs, device=getattr(args, "device", None),
                                      compile=getattr(args, "compile", None), model=model,
                                      eval_k=args.eval_k, write_report=not args.no_report,
                                      tensorboard=args.tensorboard, notify=print)
    else:
        result = workflows.fit_run(_estimator(args), args.data, out, binarize=args.binarize,
                                   header=args.header, test_fraction=args.test_fraction,
                                   stream=getattr(args, "stream", False),
                                   ram_budget=getattr(args, "ram_budget", None),
                                   eval_k=args.eval_k, write_report=not args.no_report,
                                   overwrite=args.overwrite, missing=args.missing,
                                   column_types=args.column_types, notify=print)
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
    plan = summary.get("evaluation", {})
    if plan.get("chosen") == "auto":
        print(f"(evaluation: {evaluation.describe(plan['k'], plan['budget_seconds'])}"
              + (f"; the train row scores a seeded sample of {plan['train_rows']} of "
                 f"{plan['train_rows_of']} rows" if plan["train_rows"] < plan["train_rows_of"]
                 else "") + ")")
    if summary.get("timings"):
        print("time: " + ", ".join(f"{phase} {seconds:.1f} s"
                                   for phase, seconds in summary["timings"].items()))
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
