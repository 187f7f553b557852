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
import copy
import json
import shutil
from pathlib import Path

from .. import plots, report, runs
from ..api import options_for
from ..checkpoint import read_json, stamp, write_json
from ..errors import ConfigError
from . import fit
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
    p = sub.add_parser(name, help="train one model per beta and draw the rate-distortion plane",
                       description="Train one model per KL weight beta (every fit option "
                       "applies to all of them) and compare them in the rate-distortion plane. "
                       "Resumable: finished members are skipped.")
    p.add_argument("--beta", type=betas, default=[0.1, 0.3, 1.0, 3.0, 10.0], metavar="B1,B2,...",
                   help="KL weights, comma-separated (default 0.1,0.3,1,3,10)")
    fit.add_options(p, sweep=True)
    o = p.add_argument_group("output")
    o.add_argument("--out", type=Path, required=True, metavar="DIR", help="the sweep directory")
    o.add_argument("--overwrite", action="store_true", help="replace an existing sweep in --out")


def member_dir(out: Path, beta: float) -> Path:
    return out / f"beta-{beta:g}"


def _options(args: argparse.Namespace) -> dict:
    """The fit options shared by every member (what must match to continue a sweep): those
    that apply to the model swept (a VAE sweep records no mixture option)."""
    skip = {"beta", "out", "overwrite", "command", "quiet", "no_report", "resume"}
    options = options_for(args.model, {k: v for k, v in sorted(vars(args).items()) if k not in skip})
    return json.loads(json.dumps(options, default=str))  # as config.json will hold them


def _prepare(out: Path, args: argparse.Namespace) -> list[float]:
    """Create or check the sweep directory; returns every beta it holds after this call."""
    options = _options(args)
    if out.exists() and args.overwrite:
        runs.read_config(out, kinds=("sweep",))  # only ever delete a sweep
        shutil.rmtree(out)
    if (out / "config.json").exists():
        config = runs.read_config(out, kinds=("sweep",))
        # Sweeps written before --header read their data with "auto"; those written before
        # options were filtered by model still continue.
        saved = options_for(args.model, {"header": "auto", **config["params"]})
        differ = sorted(k for k in set(saved) | set(options) if saved.get(k) != options.get(k))
        if differ:
            raise ConfigError(f"--out {out}: holds a sweep with other options ({', '.join(differ)}); "
                              "repeat its options, use --overwrite, or another --out")
        all_betas = list(dict.fromkeys([*config["betas"], *args.beta]))
    else:
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise ConfigError(f"--out {out}: exists and is not an elbokit sweep")
        out.mkdir(parents=True, exist_ok=True)
        all_betas = list(args.beta)
    runs.write_config(out, {"kind": "sweep", "betas": all_betas, "params": options})
    return all_betas


def run(args: argparse.Namespace) -> int:
    if args.model != "vae":
        raise ConfigError("a sweep varies the VAE's KL weight beta; --model mixture has none")
    fit._estimator(_member_args(args, args.beta[0], args.out, False))  # refuse bad options first
    out: Path = args.out
    all_betas = _prepare(out, args)
    for beta in args.beta:
        member = member_dir(out, beta)
        if (member / "summary.json").exists():
            print(f"beta = {beta:g}: finished before, skipped ({member})")
            continue
        resume = (member / "config.json").exists()
        print(f"beta = {beta:g}: {'resuming' if resume else 'training'} {member}")
        code = fit.run(_member_args(args, beta, member, resume))
        if code:
            return code
    points = _collect(out, all_betas)
    write_json(out / "sweep.json", stamp("elbokit.sweep", {"split": points[0]["split"],
                                                           "runs": points}))
    finished = [p for p in points if p["rate"] is not None]
    plots.rate_distortion(finished, path=out / "rate_distortion.png",
                          svg_path=out / "rate_distortion.svg")
    print(format_table(("beta", "rate (KL)", "distortion", "ELBO", "active units"),
                       [[p["beta"], p["rate"], p["distortion"], p["elbo"], p["active_units"]]
                        for p in finished]))
    print(f"(nats per example on the {points[0]['split']} split; rate = KL(q(z|x) || p(z)), "
          "distortion = -E_q[log p(x|z)], ELBO = -(rate + distortion))")
    if not args.no_report:
        print(f"report: {report.write_report(out)}")
    return 0


def _member_args(args: argparse.Namespace, beta: float, out: Path, resume: bool) -> argparse.Namespace:
    member = copy.copy(args)
    member.beta, member.out, member.resume, member.overwrite = beta, out, resume, False
    return member


def _collect(out: Path, all_betas: list[float]) -> list[dict]:
    """Rate, distortion and ELBO of every finished member on its held-out split."""
    points = []
    for beta in sorted(all_betas):
        member = member_dir(out, beta)
        point = {"beta": beta, "dir": member.name, "rate": None, "distortion": None,
                 "elbo": None, "reconstruction": None, "kl": None, "active_units": None,
                 "split": "test"}
        if (member / "summary.json").exists():
            summary = read_json(member / "summary.json")
            split = "test" if "test" in summary["splits"] else "train"
            scores = summary["splits"][split]
            point.update(split=split, rate=scores["kl"], distortion=-scores["reconstruction"],
                         elbo=scores["elbo"], reconstruction=scores["reconstruction"],
                         kl=scores["kl"],
                         active_units=summary.get("diagnostics", {}).get("active_units"))
        points.append(point)
    return points
