"""``run_dir/report.html``: one self-contained page that explains a run, from its files only.

:func:`write_report` renders what a run directory holds; it never trains or evaluates:

- a model run (``config.json`` kind ``vae`` or ``mixture``, written by ``elbokit fit``):
  configuration, scores per split (``summary.json``, and ``evaluation.json`` from
  ``elbokit evaluate``), diagnostics with plain-language explanations, the figures in
  ``figures/`` and a summary of ``metrics.jsonl``;
- a sweep (kind ``sweep``, written by ``elbokit sweep``): the shared options, one row per
  β from ``sweep.json``, ``rate_distortion.png`` and links to the member runs' reports.

The page is self-contained and safe to open anywhere: figures are inlined as
``data:image/png;base64`` URIs, the only style sheet is an inline ``<style>``, there is no
JavaScript and no reference to any other resource, every string read from a file is
HTML-escaped (and a URL scheme in one is defused, so the text never holds an ``http://``), and
the page reads in order without its style sheet. Optional files that are missing or unreadable
are named in the page instead of failing it.

:func:`render_summary` is a model run in a notebook (``Run._repr_html_``): the scores and the
main figures, built by the same functions from the same files. The HTML pieces both use
(escaping, numbers, tables, inline figures, the training log) are :mod:`elbokit.markup`'s.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from . import runs
from .api import MODEL_KINDS, options_for
from .checkpoint import atomic_write
from .errors import ElbokitError
from .markup import esc, fmt, training_log
from .markup import figure as _figure
from .markup import key_values as _key_values
from .markup import nested as _get
from .markup import number as _number
from .markup import plain as _plain
from .markup import table as _table

__all__ = ["REPORT", "FIGURES_DIR", "FIGURES", "SWEEP_FIGURE", "REPORT_KINDS", "write_report",
           "render_report", "render_summary", "SUMMARY_FIGURES"]

REPORT = "report.html"
FIGURES_DIR = "figures"
SWEEP_FIGURE = "rate_distortion.png"
REPORT_KINDS = (*MODEL_KINDS, "sweep")

# The figures of a model run, in the order shown: (alt text, caption: what to look for).
FIGURES: dict[str, tuple[str, str]] = {
    "training_curves.png": (
        "Training curves: ELBO, reconstruction and KL per epoch on training and validation data",
        "The ELBO, its reconstruction term and its KL term per epoch (for a mixture fitted by EM: "
        "the log-likelihood per iteration). Look for the validation ELBO levelling off (more "
        "epochs will not help), a growing gap between training and validation (overfitting), "
        "and the KL rising while the reconstruction improves: the two terms trading nats."),
    "samples.png": (
        "Samples from the model: the decoder's mean E[x | z] for z drawn from the prior",
        "New data from the model: z drawn from the prior p(z), shown as the decoder's mean "
        "E[x | z]. Look for samples that resemble the data and differ from each other. Samples "
        "that all look alike, or like a blurred average, mean the decoder makes little use of z."),
    "reconstructions.png": (
        "Held-out examples beside their reconstructions",
        "Held-out examples beside their reconstructions E[x | z] at the posterior mean "
        "z = E_q[z | x]. Faithful reconstructions show that z carries information about each "
        "example; reconstructions that all look the same show that it does not (collapse)."),
    "latent_space.png": (
        "The latent codes of held-out examples (posterior means), coloured by label when known",
        "Where the encoder puts held-out examples: posterior means E_q[z | x] (projected by PCA "
        "beyond two dimensions; for a mixture, the posterior over components), coloured by label "
        "when the data have labels. Look for structure: classes that separate although the model "
        "never saw a label. Every example at the same point means z ignores x."),
    "traversals.png": (
        "Latent traversals: the decoder's mean as one latent dimension moves at a time",
        "The decoder's mean E[x | z] as one latent dimension at a time moves from -3 to +3 with "
        "the others held at 0, for the dimensions that carry the most KL. Look for a dimension "
        "that changes one aspect of the data (thickness, slant, shape); a row that does not "
        "change is an inactive dimension."),
    "kl_per_dimension.png": (
        "KL divergence per latent dimension, inactive dimensions in grey",
        "The rate each latent dimension pays: KL(q(z_i | x) || p(z_i)) averaged over held-out "
        "examples, in nats; inactive dimensions in grey. Look for a few dimensions carrying "
        "most of the KL and the rest near 0: the model uses fewer dimensions than it has."),
    "pseudo_inputs.png": (
        "The VampPrior's learned pseudo-inputs",
        "The prior p(z) is the average of the encoder's posteriors at these learned inputs "
        "(Tomczak & Welling 2018), shown as data. Pseudo-inputs that look like typical examples "
        "of different kinds mean the prior has spread its mass over the kinds of data; many "
        "near-identical ones mean it uses fewer components than it has."),
}
# The figures of a run's notebook view (render_summary), where present; report.html has them all.
# What a run learned at a glance, about 100 kB for the digits: every figure would add 300 kB
# to the notebook file each time a run is shown.
SUMMARY_FIGURES = ("training_curves.png", "samples.png", "reconstructions.png")
SUMMARY_SCALE = 0.6  # of the figures' pixels: the three fit one screen of a notebook
SWEEP_CAPTION = (
    "Each point is one run of the sweep, placed by its rate (the KL term, nats) and its distortion "
    "(minus the reconstruction term, nats). Since ELBO = -(distortion + rate), the diagonal "
    "lines of slope -1 are lines of equal ELBO, and lines nearer the origin are better. "
    "A low β buys low distortion with a high rate (sharp reconstructions, an expensive code); a "
    "high β drives the rate towards 0 until the posterior collapses and the decoder ignores z.")

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; line-height: 1.5;
       color: #1d1d1f; background: #fff; max-width: 62rem; margin: 0 auto; padding: 1rem 1.5rem 3rem; }
h1 { font-size: 1.8rem; margin-bottom: 0.2rem; word-break: break-all; }
h2 { font-size: 1.35rem; border-bottom: 2px solid #d0d4dc; padding-bottom: 0.2rem; margin-top: 2.2rem; }
h3 { font-size: 1.1rem; margin-top: 1.4rem; }
.meta { color: #4a4f59; margin-top: 0; }
nav ul { list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: 0.4rem 1.2rem; }
table { border-collapse: collapse; margin: 0.6rem 0 1rem; font-size: 0.95rem; }
th, td { border: 1px solid #d0d4dc; padding: 0.25rem 0.6rem; text-align: left; vertical-align: top; }
th { background: #f1f3f7; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.best td { font-weight: 600; background: #f3f9f1; }
tr.inactive td { color: #80858f; }
code { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 0.92em; }
.note { color: #4a4f59; font-size: 0.92rem; }
.missing { color: #6b4e00; background: #fff8e1; border-left: 4px solid #e0a800; padding: 0.4rem 0.8rem; }
.warning { border: 2px solid #b3261e; background: #fdecea; color: #5f100c; padding: 0.6rem 1rem;
           margin: 1rem 0; border-radius: 4px; }
.warning h3 { margin-top: 0.2rem; color: #b3261e; }
dl.explain dt { font-weight: 600; margin-top: 0.8rem; }
dl.explain dd { margin-left: 1.2rem; }
figure { margin: 1.6rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #d0d4dc; }
figcaption { font-size: 0.93rem; color: #30343b; max-width: 48rem; }
footer { margin-top: 3rem; color: #6a6f79; font-size: 0.85rem; }
@media print { nav { display: none; } figure { break-inside: avoid; } }
"""


# -- public API ------------------------------------------------------------------------------


def write_report(run_dir: str | Path) -> Path:
    """Render ``run_dir/report.html`` from the files in ``run_dir`` (atomically) and return its
    path. Raises :class:`~elbokit.errors.CheckpointError` for a directory that is not a model
    or sweep run (a classifier run, a directory without config.json)."""
    run_dir = Path(run_dir)
    text = render_report(run_dir)
    path = run_dir / REPORT
    atomic_write(path, text.encode("utf-8"))
    return path


def render_report(run_dir: str | Path) -> str:
    """The HTML of :func:`write_report`, without writing it."""
    run_dir = Path(run_dir)
    config = runs.read_config(run_dir, kinds=REPORT_KINDS)
    page = _Page(title=_run_name(run_dir))
    if config.get("kind", "vae") == "sweep":
        _sweep_report(page, run_dir, config)
    else:
        _model_report(page, run_dir, config)
    return page.html()


def render_summary(run_dir: str | Path) -> str:
    """A model run in a few lines of HTML, for a notebook (``Run._repr_html_``): the model
    and data, the collapse warning if any, the scores per split with how they were computed
    and how long each phase took, and the figures of :data:`SUMMARY_FIGURES` that exist;
    the rest is in report.html. Built as the report is, from the run's files only (nothing is
    trained, scored or drawn), as one ``<div>`` without a style sheet: a notebook styles its
    outputs, and a ``<style>`` there would restyle the whole notebook. A directory that is
    not a model run gives one line saying why (a notebook's repr must not raise)."""
    run_dir = Path(run_dir)
    try:
        config = runs.read_config(run_dir, kinds=tuple(MODEL_KINDS))
    except ElbokitError as e:
        return f'<div class="elbokit-run">{_missing(esc(e))}</div>'
    files = _RunFiles.read(run_dir)
    page = _Page(title=_run_name(run_dir))
    page.header.append(_model_line(config, files.diagnostics))
    where = f"run directory <code>{esc(run_dir)}</code>"
    if (run_dir / REPORT).is_file():
        where += f"; every figure, the diagnostics and the training log: <code>{REPORT}</code>"
    page.header.append(f'<p class="meta">{where}</p>')
    warnings = _collapse_warnings(files.diagnostics) if files.diagnostics is not None else []
    if warnings:
        page.header.append('<p class="warning"><strong>Warning:</strong> '
                           + "; ".join(esc(w) for w in warnings) + "</p>")
    _scores_section(page, run_dir, files.summary, files.summary_problem, files.evaluation,
                    files.evaluation_problem, explain=False)
    _figures_section(page, run_dir, SUMMARY_FIGURES, SUMMARY_SCALE)
    return page.fragment()


def _run_name(run_dir: Path) -> str:
    return run_dir.resolve().name or str(run_dir)


# -- page building ---------------------------------------------------------------------------


@dataclass
class _Page:
    """An HTML page assembled section by section; every argument is already HTML."""

    title: str
    header: list[str] = field(default_factory=list)
    sections: list[tuple[str, str, list[str]]] = field(default_factory=list)

    def section(self, anchor: str, heading: str) -> list[str]:
        body: list[str] = []
        self.sections.append((anchor, heading, body))
        return body

    def html(self) -> str:
        nav = "".join(f'<li><a href="#{a}">{h}</a></li>' for a, h, _ in self.sections)
        sections = "\n".join(f'<section id="{a}">\n<h2>{h}</h2>\n' + "\n".join(body) + "\n</section>"
                             for a, h, body in self.sections)
        return "\n".join([
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            '<meta name="generator" content="elbokit report">',
            f"<title>elbokit report: {esc(self.title)}</title>",
            f"<style>{STYLE}</style>",
            "</head>",
            "<body>",
            "<header>",
            f"<h1>{esc(self.title)}</h1>",
            *self.header,
            f'<nav aria-label="Sections"><ul>{nav}</ul></nav>',
            "</header>",
            "<main>",
            sections,
            "</main>",
            "<footer><p>Written by <code>elbokit report</code> from the files in this run "
            "directory. Self-contained: no scripts, no external resources; figures are "
            "embedded.</p></footer>",
            "</body>",
            "</html>",
            "",
        ])

    def fragment(self) -> str:
        """The title, header and sections as one ``<div>`` for a notebook: no document, style
        sheet or navigation; the sections' headings one level below a notebook's title."""
        sections = [f"<h4>{h}</h4>\n" + "\n".join(body) for _, h, body in self.sections]
        return "\n".join(['<div class="elbokit-run">',
                          f"<h3>elbokit run <code>{esc(self.title)}</code></h3>",
                          *self.header, *sections, "</div>"])


def _missing(text: str) -> str:
    return f'<p class="missing">{text}</p>'


def _read_optional_json(path: Path) -> tuple[Any, str | None]:
    """``(content, None)``, ``(None, None)`` when the file is absent, or ``(None, problem)``."""
    if not path.exists():
        return None, None
    try:
        return json.loads(path.read_text(encoding="utf-8")), None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        return None, f"{path.name}: not a readable JSON file ({e})"


def _written_line(path: Path, what: str) -> str:
    written = time.strftime("%Y-%m-%d %H:%M", time.localtime())
    return f'<p class="meta">{what} &middot; report written {written} from <code>{esc(path)}</code></p>'


# -- model runs ------------------------------------------------------------------------------


def _describe_model(config: dict, diagnostics: dict | None) -> str:
    """One line: the model (text, escaped later). The fitted module's own description, which
    the diagnostics record (``"model"``: see :func:`elbokit.models.base.describe`), with the
    options of how it was trained; runs whose diagnostics lack it (written before it existed,
    or by hand) are described from their options."""
    params = config.get("params") if isinstance(config.get("params"), dict) else {}
    own = _get(diagnostics, "model")
    if isinstance(own, str):
        training = [f"estimator {params['estimator']}" if params.get("estimator") else "",
                    f"fitted by {params['fit']}" if params.get("fit") else ""]
        return "; ".join([own, *filter(None, training)])
    kind = config.get("kind", "vae")
    if kind == "mixture":
        parts = [f"{params.get('n_components', '?')} components"]
        if params.get("fit"):
            parts.append(f"fitted by {params['fit']}")
    else:
        latent = params.get("latent") or f"gaussian:{params.get('latent_dim', '?')}"
        parts = [f"latent {latent}"]
        if params.get("estimator"):
            parts.append(f"estimator {params['estimator']}")
    if params.get("likelihood"):
        parts.append(f"{params['likelihood']} likelihood")
    name = {"vae": "VAE", "mixture": "Mixture model"}.get(kind, kind)
    return f"{name} ({', '.join(str(p) for p in parts)})"


def _describe_data(data: Any) -> str:
    if not isinstance(data, dict):
        return "unknown data"
    text = f"data {data.get('source', '?')}"
    if data.get("n_examples") is not None:
        text += f": {data['n_examples']} examples"
        if data.get("dim") is not None:
            text += f" of dimension {data['dim']}"
    return text


@dataclass
class _RunFiles:
    """What a model run's optional files hold: summary.json, evaluation.json (each None when
    absent or unreadable, with the problem), and the diagnostics of either, with its name."""

    summary: dict | None
    summary_problem: str | None
    evaluation: dict | None
    evaluation_problem: str | None
    diagnostics: dict | None
    diagnostics_from: str | None

    @classmethod
    def read(cls, run_dir: Path) -> _RunFiles:
        summary, summary_problem = _read_optional_json(run_dir / "summary.json")
        evaluation, evaluation_problem = _read_optional_json(run_dir / "evaluation.json")
        summary = summary if isinstance(summary, dict) else None
        evaluation = evaluation if isinstance(evaluation, dict) else None
        diagnostics, diagnostics_from = None, None
        if isinstance(_get(summary, "diagnostics"), dict):
            diagnostics, diagnostics_from = summary["diagnostics"], "summary.json"
        elif isinstance(_get(evaluation, "diagnostics"), dict):
            diagnostics, diagnostics_from = evaluation["diagnostics"], "evaluation.json"
        return cls(summary, summary_problem, evaluation, evaluation_problem, diagnostics,
                   diagnostics_from)


def _model_line(config: dict, diagnostics: dict | None) -> str:
    """The header's line naming the model and the data (HTML)."""
    return (f'<p class="meta"><strong>{esc(_describe_model(config, diagnostics))}</strong> on '
            f"{esc(_describe_data(config.get('data')))}</p>")


def _model_report(page: _Page, run_dir: Path, config: dict) -> None:
    files = _RunFiles.read(run_dir)
    summary, diagnostics = files.summary, files.diagnostics
    page.header.append(_model_line(config, diagnostics))
    page.header.append(_written_line(run_dir, "model run"))
    sweep = _parent_sweep(run_dir)
    if sweep:
        page.header.append(f'<p class="meta">One run of the sweep {sweep}.</p>')
    if diagnostics is not None and _collapse_warnings(diagnostics):
        page.header.append('<p class="warning"><strong>Warning:</strong> the diagnostics found a '
                           'problem (posterior collapse): see <a href="#diagnostics">Diagnostics'
                           "</a>.</p>")

    _configuration_section(page, config)
    _scores_section(page, run_dir, summary, files.summary_problem, files.evaluation,
                    files.evaluation_problem)
    _diagnostics_section(page, diagnostics, files.diagnostics_from, run_dir)
    _unusual_rows_section(page, summary)
    _figures_section(page, run_dir)
    _training_section(page, run_dir)


def _parent_sweep(run_dir: Path) -> str | None:
    """A link to the report of the sweep that holds ``run_dir`` (HTML), or None. Linked even
    before the sweep's report exists: ``elbokit sweep`` writes it after its members'."""
    parent = run_dir.resolve().parent
    try:
        runs.read_config(parent, kinds=("sweep",))
    except ElbokitError:
        return None
    return f'<a href="../{REPORT}">{esc(parent.name)}</a>'


def _configuration_section(page: _Page, config: dict) -> None:
    body = page.section("configuration", "Configuration")
    data = config.get("data") if isinstance(config.get("data"), dict) else {}
    split = data.get("split") if isinstance(data.get("split"), dict) else None
    body.append("<h3>Data</h3>")
    pairs = [(k, data[k]) for k in ("source", "header", "n_examples", "dim", "image_shape", "binarize")
             if k in data]
    if split is not None:
        pairs.append(("split", f"seed {_plain(split.get('seed'))}, test fraction "
                               f"{_plain(split.get('test_fraction'))}, validation fraction "
                               f"{_plain(split.get('val_fraction'))} of the rest"))
    body.append(_key_values(pairs))
    body.append("<h3>Model and training options</h3>")
    params = config.get("params")
    if isinstance(params, dict):
        body.append(_key_values(sorted(params.items())))
    else:
        body.append(_missing("config.json records no options (<code>params</code>)."))


def _score_row(label: str, scores: dict, with_exact: bool) -> list[str]:
    ll = scores.get("log_likelihood") if isinstance(scores.get("log_likelihood"), dict) else {}
    estimate, stderr = ll.get("estimate"), ll.get("stderr")
    shown_stderr = None if ll.get("exact") else _number(stderr)  # an exact value has none
    log_px = "n/a" if _number(estimate) is None else (
        fmt(estimate) + ("" if shown_stderr is None else f" &plusmn; {fmt(stderr)}"))
    row = [esc(label), fmt(scores.get("n_examples")), fmt(scores.get("elbo")),
           fmt(scores.get("reconstruction")), fmt(scores.get("kl")),
           fmt(_get(scores, "iwae", "value")), log_px]
    if with_exact:
        row.append(fmt(scores.get("exact_log_likelihood")))
    return row


def _ks(rows: Sequence[dict], *keys: str) -> str:
    values = sorted({str(v) for r in rows if (v := _get(r, *keys)) is not None})
    return "/".join(values) if values else "?"


def _scores_section(page: _Page, run_dir: Path, summary: dict | None, summary_problem: str | None,
                    evaluation: dict | None, evaluation_problem: str | None,
                    explain: bool = True) -> None:
    """The scores per split, how they were computed, the time each phase took and the
    epochs; ``explain``: what the ELBO, IWAE and log p(x) are, with the test split's sum."""
    body = page.section("summary", "Summary")
    for problem in (summary_problem, evaluation_problem):
        if problem:
            body.append(_missing(esc(problem)))
    labelled: list[tuple[str, dict]] = []
    splits = _get(summary, "splits")
    if isinstance(splits, dict):
        labelled += [(str(name), s) for name, s in splits.items() if isinstance(s, dict)]
    if evaluation is not None and "elbo" in evaluation:
        labelled.append((f"{evaluation.get('split', '?')} (evaluation.json)", evaluation))
    if not labelled:
        body.append(_missing(f"No evaluation yet: no scores in summary.json or evaluation.json. "
                             f"Finish training with <code>elbokit fit --out {esc(run_dir)} --resume"
                             f"</code>, or run <code>elbokit evaluate {esc(run_dir)}</code>."))
    else:
        with_exact = any(_number(s.get("exact_log_likelihood")) is not None for _, s in labelled)
        headers = ["split", "examples", "ELBO", "reconstruction", "KL", "IWAE<sub>k</sub>",
                   "log p(x) &plusmn; SE"] + (["exact log p(x)"] if with_exact else [])
        scores = [s for _, s in labelled]
        body.append(_table(headers, [_score_row(label, s, with_exact) for label, s in labelled],
                           numeric=[False] + [True] * (len(headers) - 1)))
        sampled = [s for s in scores if not _get(s, "log_likelihood", "exact")]
        notes = ["Nats per example; for the ELBO, IWAE and log p(x), higher is better"]
        if sampled:
            notes.append(f"IWAE with k = {esc(_ks(sampled, 'iwae', 'k'))} and log p(x) "
                         f"importance-sampled with k = {esc(_ks(sampled, 'log_likelihood', 'k'))} "
                         "samples (the same draws), &plusmn; its standard error (the Monte-Carlo "
                         "error of the estimate)")
        if with_exact:
            notes.append("the exact log p(x) sums over every value of z"
                         + ("; where log p(x) has no standard error, it is that sum and nothing "
                            "was sampled" if len(sampled) < len(scores) else ""))
        plan = _get(summary, "evaluation")
        if isinstance(plan, dict) and plan.get("chosen") == "auto":
            notes.append(f"k was chosen to fit about {fmt(plan.get('budget_seconds'), 1)} s of "
                         f"scoring after {fmt(plan.get('training_seconds'), 1)} s of training")
        if isinstance(plan, dict) and _number(plan.get("train_rows")) is not None and \
                plan.get("train_rows") != plan.get("train_rows_of"):
            notes.append(f"the train row scores a seeded sample of {fmt(plan.get('train_rows'))} "
                         f"of {fmt(plan.get('train_rows_of'))} rows")
        timings = _get(summary, "timings")
        if isinstance(timings, dict) and timings:
            # In the order the phases ran (summary.json's keys are sorted).
            order = ("data", "training", "evaluation", "diagnostics", "report")
            phases = sorted(timings, key=lambda k: order.index(k) if k in order else len(order))
            notes.append("time taken: " + ", ".join(
                f"{esc(phase)} {fmt(timings[phase], 1)} s" for phase in phases))
        body.append(f'<p class="note">{"; ".join(notes)}.</p>')
        if explain:
            body.append(_elbo_explanation(labelled))
    if summary is not None:
        facts = []
        if _number(summary.get("epochs_trained")) is not None:
            facts.append(f"{esc(summary['epochs_trained'])} epochs trained")
        if summary.get("stopped_early") is True:
            facts.append("stopped early (the validation ELBO stopped improving)")
        elif summary.get("stopped_early") is False:
            facts.append("ran to its epoch limit")
        if _number(summary.get("adjusted_rand_index")) is not None:
            facts.append(f"components against labels on the test split: adjusted Rand index "
                         f"{fmt(summary['adjusted_rand_index'])} (1 = the classes exactly, 0 = chance)")
        if facts:
            body.append(f"<p>{'; '.join(facts)}.</p>")


def _elbo_explanation(labelled: Sequence[tuple[str, dict]]) -> str:
    label, scores = next(((lbl, s) for lbl, s in labelled if lbl == "test"), labelled[-1])
    example = ""
    if all(_number(scores.get(k)) is not None for k in ("elbo", "reconstruction", "kl")):
        example = (f" On the {esc(label)} split: {fmt(scores['reconstruction'])} &minus; "
                   f"{fmt(scores['kl'])} = {fmt(scores['elbo'])} nats.")
    return (
        '<dl class="explain">'
        "<dt>ELBO = reconstruction &minus; KL</dt>"
        "<dd>The reconstruction term E<sub>q</sub>[log p(x | z)] rewards a code z from which the "
        "decoder can rebuild x; the KL term KL(q(z | x) || p(z)) charges, in nats, for the "
        "information the code holds about x beyond what the prior says. The two fight: a more "
        "informative code reconstructs better but costs more KL." + example + "</dd>"
        "<dt>IWAE<sub>k</sub> and log p(x)</dt>"
        "<dd>ELBO &le; IWAE<sub>k</sub> &le; log p(x): averaging k importance weights tightens the "
        "bound, and many samples estimate log p(x) itself. The distance from the ELBO to log p(x) is "
        "the gap explained under Diagnostics.</dd>"
        "</dl>")


def _collapse_warnings(diagnostics: dict) -> list[str]:
    """The warning sentences to show in the warning box (empty: no box)."""
    warnings = diagnostics.get("warnings")
    sentences = [str(w) for w in warnings] if isinstance(warnings, list) else []
    if diagnostics.get("collapsed") is True and not sentences:
        sentences = ["posterior collapse: no latent variable's posterior mean varies with x; "
                     "the decoder models the data without z."]
    return sentences


def _diagnostics_section(page: _Page, diagnostics: dict | None, source: str | None,
                         run_dir: Path) -> None:
    body = page.section("diagnostics", "Diagnostics")
    if diagnostics is None:
        body.append(_missing(f"No diagnostics yet: run <code>elbokit evaluate {esc(run_dir)}</code> "
                             "(or a current <code>elbokit fit</code>) to compute them."))
        return
    where = f"{esc(diagnostics.get('split', '?'))} split"
    if _number(diagnostics.get("n_examples")) is not None:
        where += f", {esc(diagnostics['n_examples'])} examples"
    body.append(f'<p class="note">From {esc(source)} ({where}).</p>')
    warnings = _collapse_warnings(diagnostics)
    if warnings:
        items = "".join(f"<li>{esc(w)}</li>" for w in warnings)
        body.append('<div class="warning" role="alert"><h3>Warning: posterior collapse</h3>'
                    f"<ul>{items}</ul><p>When the posterior collapses, q(z | x) equals the prior "
                    "for every x: the KL term is close to zero, z carries no information about x, and the "
                    "decoder models the data on its own. The ELBO may still look reasonable, but "
                    "the latent space is useless.</p></div>")

    facts: list[str] = []
    threshold = diagnostics.get("active_threshold", 0.01)
    active, latent_dim = diagnostics.get("active_units"), diagnostics.get("latent_dim")
    if _number(active) is not None:
        of = f" of {esc(latent_dim)}" if _number(latent_dim) is not None else ""
        per_layer = diagnostics.get("active_units_per_layer")
        if isinstance(per_layer, list) and all(_number(a) is not None for a in per_layer):
            of += f" (by stochastic layer, z1 first: {esc(', '.join(map(str, per_layer)))})"
        facts.append(
            f"<dt>Active units: {esc(active)}{of}</dt><dd>A latent dimension is <em>active</em> when "
            f"its posterior mean moves with x: Cov<sub>x</sub>(E<sub>q</sub>[z<sub>i</sub> | x]) &gt; "
            f"{fmt(threshold, 2)}. An inactive dimension gives every example the same code, so it "
            "carries nothing about x; the model effectively has only its active dimensions.</dd>")
    if _number(diagnostics.get("gap")) is not None:
        facts.append(
            f"<dt>Gap log p(x) &minus; ELBO: {fmt(diagnostics['gap'])} nats</dt><dd>How loose the "
            "bound is. On average it equals KL(q(z | x) || p(z | x)): how far the encoder's "
            "approximate posterior is from the true posterior of the decoder. A small gap means the "
            "encoder is nearly exact; a large one means a better encoder (or IWAE training) would "
            "gain nats.</dd>")
    if _number(diagnostics.get("mutual_information")) is not None:
        limit = diagnostics.get("mutual_information_limit")
        bound = f" (at most log n = {fmt(limit, 2)})" if _number(limit) is not None else ""
        facts.append(
            f"<dt>Mutual information I(x; z): {fmt(diagnostics['mutual_information'], 2)} nats"
            f"{bound}</dt><dd>How many nats the code z carries about which example x it came from, "
            "under the encoder. It can be at most log n on n examples (knowing z exactly identifies "
            "one example). It is part of the KL term, whose rest is KL(q(z) || p(z)): the price of "
            "all the codes together not matching the prior. Near 0 means z says nothing about x.</dd>")
    if isinstance(diagnostics.get("kl_per_dimension"), list):
        facts.append(
            "<dt>KL per dimension</dt><dd>The KL term split over latent dimensions: the rate, in "
            "nats, each dimension pays to carry information about x. They add up to the KL in the "
            "table above (for independent dimensions). A dimension paying about 0 nats is unused.</dd>")
    if diagnostics.get("collapsed") is False and not warnings:
        facts.append("<dt>No posterior collapse</dt><dd>At least one latent dimension is active.</dd>")
    if facts:
        body.append('<dl class="explain">' + "".join(facts) + "</dl>")
    body.append(_per_dimension_table(diagnostics))


def _unusual_rows_section(page: _Page, summary: dict | None) -> None:
    """A table run's most unusual held-out rows (``summary["unusual_rows"]``), if any."""
    found = _get(summary, "unusual_rows")
    if not isinstance(found, list) or not found:
        return
    body = page.section("unusual", "Most unusual rows")
    split = _get(summary, "diagnostics", "split") or "held-out"
    body.append(f"<p>The {len(found)} rows of the {esc(split)} split with the highest anomaly "
                "score: the row's most unusual cell, its surprise (-log p(cell | the row's other "
                "cells), nats) against the same column's in the training rows, in interquartile "
                "ranges. <code>elbokit score RUN TABLE</code> scores any table this way.</p>")
    rows = [[esc(r.get("line") if r.get("line") is not None else r.get("row")), fmt(r.get("anomaly")),
             fmt(r.get("log_likelihood")), fmt(r.get("stderr")),
             f"<code>{esc(r.get('cell'))}</code> = {esc(r.get('value'))}", fmt(r.get("surprise"))]
            for r in found if isinstance(r, dict)]
    where = "line" if found and isinstance(found[0], dict) and found[0].get("line") is not None else "row"
    body.append(_table([where, "anomaly", "log p(x)", "± stderr", "most unusual cell", "surprise"],
                       rows, numeric=[True, True, True, True, False, True]))


def _per_dimension_table(diagnostics: dict) -> str:
    columns = [(key, diagnostics.get(key)) for key in ("kl_per_dimension", "posterior_mean_variance",
                                                        "active")]
    columns = [(key, values) for key, values in columns if isinstance(values, list)]
    if not columns:
        return ""
    n = max(len(values) for _, values in columns)
    headers = {"kl_per_dimension": "KL (nats)",
               "posterior_mean_variance": "Cov<sub>x</sub>(E<sub>q</sub>[z<sub>i</sub> | x])",
               "active": "active"}
    rows, classes = [], []
    active = diagnostics.get("active") if isinstance(diagnostics.get("active"), list) else None
    for i in range(n):
        row = [str(i)]
        for key, values in columns:
            value = values[i] if i < len(values) else None
            if key == "active":
                row.append("yes" if value is True else "no" if value is False else "n/a")
            else:
                row.append(fmt(value))
        rows.append(row)
        classes.append("inactive" if active is not None and i < len(active) and active[i] is False
                       else "")
    return ("<h3>Per latent dimension</h3>\n"
            + _table(["dimension", *(headers[k] for k, _ in columns)], rows,
                     numeric=[True] * (1 + len(columns)), row_classes=classes))


def _figures_section(page: _Page, run_dir: Path, names: Sequence[str] | None = None,
                     scale: float = 1.0) -> None:
    """The figures in ``run_dir/figures/``, known ones in :data:`FIGURES`' order with their
    captions, others after them; ``names``: only these (when present), and only their alt
    text as the caption; ``scale``: of their size in pixels."""
    body = page.section("figures", "Figures")
    directory = run_dir / FIGURES_DIR
    present = sorted(p.name for p in directory.glob("*.png")) if directory.is_dir() else []
    shown = 0
    for name, (alt, caption) in FIGURES.items():
        if name in present and (names is None or name in names):
            figure = _figure(directory / name, esc(alt), esc(caption if names is None else alt),
                             scale)
            if figure is None:
                body.append(_missing(f"{FIGURES_DIR}/{esc(name)}: not a readable PNG file."))
            else:
                body.append(figure)
                shown += 1
    extras = [name for name in present if name not in FIGURES and names is None]
    if extras:
        body.append("<h3>Other figures</h3>")
    for name in extras:
        figure = _figure(directory / name, esc(name), f"<code>{esc(name)}</code>")
        if figure is None:
            body.append(_missing(f"{FIGURES_DIR}/{esc(name)}: not a readable PNG file."))
        else:
            body.append(figure)
            shown += 1
    if not shown:
        body.append(_missing(f"No figures yet (nothing in <code>{esc(directory)}</code>): a current "
                             "<code>elbokit fit</code> draws them at the end of training."))


def _training_section(page: _Page, run_dir: Path) -> None:
    body = page.section("training", "Training log")
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        body.append(_missing("No training log (metrics.jsonl) in this run directory."))
        return
    records, bad = [], 0
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        body.append(_missing(f"metrics.jsonl: cannot read ({esc(e.strerror or e)})."))
        return
    for line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(record, dict):
            if "event" not in record:  # a rolled-back numerical fault, not an epoch
                records.append(record)
        else:
            bad += 1
    if bad:
        body.append(_missing(f"metrics.jsonl: {bad} unreadable line{'s' if bad > 1 else ''} skipped."))
    if not records:
        body.append(_missing("metrics.jsonl holds no epochs yet."))
        return
    body.extend(training_log(records, "metrics.jsonl"))


# -- sweeps ----------------------------------------------------------------------------------


def _sweep_report(page: _Page, sweep_dir: Path, config: dict) -> None:
    sweep, problem = _read_optional_json(sweep_dir / "sweep.json")
    data = config.get("data")
    betas = config.get("betas")
    what = "β sweep" + (f" over β = {', '.join(_beta(b) for b in betas)}" if isinstance(betas, list) else "")
    what += f" on {_describe_data(data)}" if isinstance(data, dict) else ""
    page.header.append(f'<p class="meta"><strong>{esc(what)}</strong></p>')
    page.header.append(_written_line(sweep_dir, "sweep"))

    body = page.section("configuration", "Shared options")
    body.append('<p class="note">Every run of the sweep was fitted with these options; only β, '
                "the weight of the KL term in the training objective, differs.</p>")
    params = config.get("params")
    if isinstance(params, dict) and params.get("model", "vae") in MODEL_KINDS:
        # Sweeps written before the sweep recorded only its model's options list others too.
        params = options_for(params.get("model", "vae"), params)
    body.append(_key_values(sorted(params.items())) if isinstance(params, dict) else
                _missing("config.json records no options (<code>params</code>)."))
    if isinstance(data, dict):
        body.append("<h3>Data</h3>")
        body.append(_key_values([(k, data[k]) for k in ("source", "n_examples", "dim", "split")
                                 if k in data]))

    body = page.section("runs", "Runs")
    members = _get(sweep, "runs")
    if problem:
        body.append(_missing(esc(problem)))
    elif sweep is None:
        body.append(_missing("No sweep.json yet: the sweep has not finished."))
    if isinstance(members, list) and members:
        body.append(_sweep_table(sweep_dir, [m for m in members if isinstance(m, dict)],
                                 sweep.get("split")))
    elif sweep is not None and not problem:
        body.append(_missing("sweep.json lists no runs."))

    body = page.section("rate-distortion", "Rate and distortion")
    body.append(
        '<dl class="explain"><dt>Rate R = KL, distortion D = &minus;reconstruction</dt><dd>'
        "The ELBO is &minus;(D + R): the rate is what the code costs (nats of information z "
        "holds about x), the distortion is how badly x is rebuilt from z. Training with weight β "
        "on the KL term minimizes D + β R, so each β picks a different trade-off: β = 1 is the "
        "ELBO itself, a low β buys low distortion with a high rate, and a high β pushes the rate "
        "to 0, where the posterior collapses and z is ignored.</dd></dl>")
    finding = _best_beta(members, sweep.get("split")) if isinstance(members, list) else None
    figure = _figure(sweep_dir / SWEEP_FIGURE,
                     "Rate-distortion plane: one point per β, with lines of equal ELBO",
                     esc(SWEEP_CAPTION + (f" {finding}" if finding else "")))
    if figure is None:
        body.append(_missing(f"No figure {SWEEP_FIGURE} in this sweep directory."))
    else:
        body.append(figure)


def _best_beta(members: list, split: Any) -> str | None:
    """What the runs table shows, in words (text, not yet escaped): which β had the best
    ELBO, and how that squares with β = 1 training on the ELBO itself. None without scores."""
    scored = [(beta, elbo) for m in members if isinstance(m, dict)
              for beta, elbo in [(_number(m.get("beta")), _number(m.get("elbo")))]
              if beta is not None and elbo is not None]
    if not scored:
        return None
    best = max(elbo for _, elbo in scored)
    winners = [beta for beta, elbo in scored if elbo == best]
    text = (f"On the {_plain(split or '?')} split the best ELBO, {fmt(best)} nats, came from "
            f"β = {', '.join(_beta(b) for b in winners)}.")
    at_one = [elbo for beta, elbo in scored if beta == 1]
    if 1 in winners:
        return text + " That is β = 1, whose training objective is the ELBO itself."
    if at_one:
        text += (f" β = 1 ({fmt(at_one[0])}) trains on the ELBO itself, so it would have the "
                 "best training ELBO if trained to the optimum; with training stopped early, "
                 "and on held-out data, another β can score higher, as here.")
    return text


def _beta(value: Any) -> str:
    """β as the sweep names its runs: 0.1, 1, 10 (text, not yet escaped)."""
    number = _number(value)
    return f"{number:g}" if number is not None else _plain(value)


def _is_member_name(name: Any) -> bool:
    """Whether ``name`` is a plain directory name inside the sweep (no path, no ``..``)."""
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\\" not in name


def _sweep_table(sweep_dir: Path, members: list[dict], split: Any) -> str:
    elbos = [_number(m.get("elbo")) for m in members]
    best = max((e for e in elbos if e is not None), default=None)
    rows, classes = [], []
    for member, elbo in zip(members, elbos, strict=True):
        name = member.get("dir")
        if _is_member_name(name) and (sweep_dir / name / REPORT).is_file():
            href = esc(quote(f"{name}/{REPORT}"))
            run = f'<a href="{href}">{esc(name)}</a>'
        else:
            run = esc(name) if name is not None else "n/a"
        if elbo is None:
            run += " (not finished)"
        active = member.get("active_units")
        is_best = best is not None and elbo == best
        rows.append([esc(_beta(member.get("beta"))), run, fmt(member.get("rate")),
                     fmt(member.get("distortion")),
                     f"<strong>{fmt(elbo)}</strong> (best)" if is_best else fmt(elbo),
                     fmt(member.get("reconstruction")),
                     fmt(member.get("kl")), esc(active) if _number(active) is not None else "n/a"])
        classes.append("best" if is_best else "")
    headers = ["β", "run", "rate (KL)", "distortion", "ELBO", "reconstruction", "KL", "active units"]
    note = (f'<p class="note">Scores on the {esc(split or "?")} split, nats per example; the row with '
            "the best ELBO is marked (best). A run's name links to its own report when it has "
            "one.</p>")
    return _table(headers, rows, numeric=[True, False, True, True, True, True, True, True],
                  row_classes=classes) + "\n" + note
