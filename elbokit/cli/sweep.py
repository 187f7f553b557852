"""``elbokit sweep``: one model per KL weight beta, and the rate-distortion plane they trace.

The beta-ELBO, reconstruction - beta * KL, trades distortion (-reconstruction) for rate (KL):
beta < 1 buys better reconstructions with more nats in z, beta > 1 squeezes z towards the
prior. Every member is an ordinary ``elbokit fit`` run; the sweep directory holds them::

    OUT/config.json            kind "sweep": the betas and the shared fit options
       beta-0.1/ ...           one fit run per beta (report.html each)
       sweep.json              rate, distortion, ELBO per beta on the held-out split
       rate_distortion.png/.svg
       report.html

Re-running the same command continues an interrupted sweep: finished members (those with a
summary.json) are skipped, an interrupted one resumes from its checkpoint. More betas with
the same options extend the sweep; other options are refused (``--overwrite`` starts over).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .. import workflows
from ..api import options_for
from ..errors import ConfigError
from . import COMMANDS, fit
from .common import MAX_FLOAT_OPTION, format_table


def betas(text: str) -> list[float]:
    """``0.1,0.3,1`` -> [0.1, 0.3, 1.0]: distinct finite numbers >= 0."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values or any(not 0 <= v <= MAX_FLOAT_OPTION for v in values):
        raise argparse.ArgumentTypeError(f"betas must be finite numbers >= 0 (at most "
                                         f"{MAX_FLOAT_OPTION:g}), got {text!r}")
    if len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"betas repeat in {text!r}")
    return values


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help=COMMANDS[name],
                       description="Train one model per KL weight beta (every fit option "
                       "applies to all of them) and compare them in the rate-distortion plane. "
                       "Resumable: finished members are skipped.")
    p.add_argument("--beta", type=betas, default=[0.1, 0.3, 1.0, 3.0, 10.0], metavar="B1,B2,...",
                   help="KL weights, comma-separated (default 0.1,0.3,1,3,10)")
    fit.add_options(p, sweep=True)
    o = p.add_argument_group("output")
    o.add_argument("--out", type=Path, required=True, metavar="DIR", help="the sweep directory")
    o.add_argument("--overwrite", action="store_true", help="replace an existing sweep in --out")


def _options(args: argparse.Namespace) -> dict:
    """The fit options shared by every member (what must match to continue a sweep): those
    that apply to the model swept (a VAE sweep records no mixture option)."""
    skip = {"beta", "out", "overwrite", "command", "quiet", "no_report", "resume", "model_options"}
    options = options_for(args.model, {k: v for k, v in sorted(vars(args).items()) if k not in skip})
    return json.loads(json.dumps(options, default=str))  # as config.json will hold them


def run(args: argparse.Namespace) -> int:
    if args.model != "vae":
        raise ConfigError(f"a sweep varies the VAE's KL weight beta; --model {args.model} has none")
    args.beta, betas = 1.0, args.beta  # the members' own beta comes from the sweep
    result = workflows.sweep(fit._estimator(args), args.data, betas, args.out,
                             options=_options(args), overwrite=args.overwrite,
                             write_report=not args.no_report, notify=print,
                             binarize=args.binarize, header=args.header,
                             test_fraction=args.test_fraction, eval_k=args.eval_k,
                             missing=args.missing, column_types=args.column_types)
    finished = [p for p in result.points if p["rate"] is not None]
    print(format_table(("beta", "rate (KL)", "distortion", "ELBO", "active units"),
                       [[p["beta"], p["rate"], p["distortion"], p["elbo"], p["active_units"]]
                        for p in finished]))
    print(f"(nats per example on the {result.points[0]['split']} split; rate = KL(q(z|x) || "
          "p(z)), distortion = -E_q[log p(x|z)], ELBO = -(rate + distortion))")
    if result.report_path is not None:
        print(f"report: {result.report_path}")
    return 0
