"""Runs as library functions: train a model into a run directory, evaluate it, sweep beta.

    >>> from elbokit import VAE, LatentModel, workflows
    >>> run = workflows.fit_run(VAE(latent_dim=8), "digits", out="runs/demo")
    >>> run.summary["splits"]["test"]["elbo"], run.metrics[-1]["epoch"]
    >>> run = workflows.Run.load("runs/demo")          # later, or from the CLI's run
    >>> run.evaluate(split="test", k=5000)             # the scores `elbokit evaluate` prints
    >>> run.report(); run.sample(16)
    >>> result = workflows.classify("sms-spam", "discriminative")   # see elbokit.classification

A run directory (see :mod:`elbokit.runs`) holds config.json, the best model, the latest
training checkpoint, metrics.jsonl, summary.json, figures/ and report.html. ``elbokit fit``,
``evaluate``, ``report``, ``sample``, ``sweep`` and ``classify`` are thin faces over these functions: they
parse options, call them and print what they return.

Under torchrun (several processes) every rank calls :func:`fit_run` with the same arguments:
rank 0 alone writes the run directory and evaluates; the others train and return None.
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from sklearn.base import clone
from sklearn.metrics import adjusted_rand_score

from . import bounds, distributed, evaluation, figures, imputation, plots, plugins, report, runs
from .api import MODEL_KINDS, VAE, LatentModel, Mixture, options_for
from .checkpoint import CheckpointWriteError, read_json, stamp, write_json
from .classification import Classification, classify  # noqa: F401 (workflows.classify)
from .data import NAMED
from .data.columns import MixedTable, read_with_schema, table_text
from .data.stream import DEFAULT_BUDGET, parse_size
from .errors import ConfigError, DataError, ElbokitError, in_file_rows, memory_guard
from .tensorboard import image_rows
from .tensorboard import require as require_tensorboard
from .training import DEFAULT_EPOCHS

if TYPE_CHECKING:
    from .models.base import LatentVariableModel

MAX_CATEGORIES = 2**16  # likelihood "categorical": codes 0 .. 65535
Notify = Callable[[str], None]


def _quiet(_: str) -> None:
    """The default ``notify``: library calls print nothing."""


REFERENCE_ROWS = 1000  # training rows that a table's cell surprises are judged against


@dataclass
class Run:
    """A run directory and what it holds: ``config`` (config.json), ``summary``
    (summary.json: scores per split, diagnostics; None until training finished) and, once
    loaded or trained, ``model`` (the fitted estimator) and ``data`` (its data and split)."""

    path: Path
    config: dict
    summary: dict | None = None
    model: LatentModel | None = None
    data: runs.RunData | None = field(default=None, repr=False)
    report_path: Path | None = None
    model_class: type | str | None = field(default=None, repr=False)  # for a lazy load

    @classmethod
    def load(cls, path: str | Path, model: type | str | None = None) -> Run:
        """The run in ``path``; its fitted model loads when first needed (:meth:`fitted`).
        ``model``: a user's model class or reference again (see :mod:`elbokit.plugins`: a
        run never imports code by itself)."""
        path = Path(path)
        config = runs.read_config(path, kinds=tuple(MODEL_KINDS))
        summary_path = path / "summary.json"
        summary = read_json(summary_path) if summary_path.exists() else None
        return cls(path, config, summary, model_class=model)

    @property
    def metrics(self) -> list[dict]:
        """One record per epoch (metrics.jsonl), events left out."""
        return figures.read_history(self.path)

    def run_data(self) -> runs.RunData:
        """The run's data and split, read again and checked to be the data it trained on."""
        if self.data is None:
            self.data = runs.prepare_data(self.config["data"])
            runs.check_fingerprint(self.data, self.config)
        return self.data

    def examples(self, split: str = "test") -> tuple[np.ndarray, np.ndarray | None]:
        """``(x [n, dim], rows)`` of a split as the model scores it, and where they are in
        the data file (None for a streamed run)."""
        data = self.run_data()
        x = data.split(split)
        if len(x) == 0:
            raise ConfigError(f"{self.path}: the {split} split is empty")
        return x, data.file_rows(split)

    def evaluate(self, x: np.ndarray | None = None, split: str = "test", k: int | None = None,
                 iwae_k: int = 50, seed: int = 0) -> dict:
        """ELBO, IWAE_k and log p(x) with its standard error (see
        :meth:`LatentModel.evaluate`: k = None is exact where z can be summed over, else 5000
        draws) and the diagnostics, on ``x: [n, dim]`` or the run's ``split``."""
        if k is not None and k < 2:
            raise ConfigError("k must be at least 2 (the standard error needs two samples)")
        if x is None:
            x, _ = self.examples(split)
        model = self.fitted()
        model.as_tensor(x)  # width and support checked before any work
        scores = model.evaluate(x, k=k, iwae_k=iwae_k, seed=seed)
        return {**scores, "diagnostics": figures.diagnose(model, x, scores)}

    def report(self, redraw: bool = False) -> Path:
        """Write report.html (drawing the figures first when there are none, or with
        ``redraw``); returns its path."""
        if redraw or not (self.path / figures.FIGURES).is_dir():
            figures.draw_run(self.fitted(), self.path, self.run_data())
        self.report_path = report.write_report(self.path)
        return self.report_path

    def _repr_html_(self) -> str:
        """The run as a notebook shows it: its scores per split, the time taken and its
        main figures (:func:`elbokit.report.render_summary`), read from its files; nothing
        is trained, scored or drawn."""
        return report.render_summary(self.path)

    def sample(self, n: int = 64, seed: int | None = 0, mean: bool = False) -> np.ndarray:
        """``n`` draws x ~ p(x) (``mean``: E[x | z]): ``[n, dim]``."""
        return self.fitted().sample(n, seed=seed, mean=mean)

    def read_table(self, path: str | Path, header: str = "auto",
                   missing: Sequence[str] = ()) -> MixedTable:
        """A table file read with the typed columns the run trained on (the same names; new
        levels, values outside a column's type refused with their line), its missing-cell
        tokens and ``missing``'s besides."""
        schema = getattr(self.fitted(), "schema_", None)
        if schema is None:
            raise ConfigError(f"{self.path}: this run was not trained on a table of typed columns "
                              "(a .csv with text or missing cells, --column-types or --missing): "
                              "it has no cells to fill or score")
        tokens = [*self.config["data"].get("missing", ()), *missing]
        return read_with_schema(path, schema, header, tokens)

    def impute(self, path: str | Path, header: str = "auto", missing: Sequence[str] = (),
               k: int = 100, draws: int | None = None, seed: int | None = 0) -> str:
        """The table file ``path`` with its missing cells filled by the model, as CSV/TSV text
        in the file's own layout (header, delimiter, every other cell as it was); ``draws``:
        that many multiple imputations, stacked, numbered in a first column ``draw``. See
        :meth:`elbokit.api.VAE.impute`."""
        table = self.read_table(path, header, missing)
        filled = self.fitted().impute(table.x, k=k, draws=draws, seed=seed)
        return table_text(table, filled)

    def score_table(self, path: str | Path, header: str = "auto", missing: Sequence[str] = (),
                    k: int = 1000, seed: int | None = 0) -> tuple[MixedTable, dict[str, np.ndarray]]:
        """``(the table, scores)`` of each row of the table file ``path``: log p(x_observed)
        with its standard error, each cell's surprise and the row's anomaly score against
        the run's training rows (:meth:`elbokit.api.VAE.score_rows`)."""
        table = self.read_table(path, header, missing)
        # Each cell's surprise is judged against its column's in (at most 1,000 of) the
        # training rows: what is unusual for the data the model learned.
        train, _ = self.examples("train")
        reference = train[np.random.default_rng(0).permutation(len(train))[:REFERENCE_ROWS]]
        return table, self.fitted().score_rows(table.x, k=k, seed=seed, reference=reference)

    def fitted(self) -> LatentModel:
        """The run's best model (loaded once)."""
        if self.model is None:
            self.model = LatentModel.load(self.path, model=self.model_class)
        return self.model


def fit_run(model: LatentModel, data: str, out: str | Path | None = None, *,
            binarize: float | str | None = None, header: str = "auto",
            test_fraction: float = 0.2, stream: bool = False, ram_budget: int | None = None,
            eval_k: int | None = None, write_report: bool = True, overwrite: bool = False,
            missing: Sequence[str] | None = None, column_types: dict[str, str] | None = None,
            notify: Notify = _quiet) -> Run | None:
    """Train ``model`` (unfitted) on ``data`` (a named data set or a file) into the run
    directory ``out`` (default runs/fit-YYYYmmdd-HHMMSS), then score the train and test
    splits, compute the diagnostics, draw the figures and write the report.

    The split: a data set's official test examples (MNIST), else ``test_fraction`` of the
    examples (seeded by ``model.seed``); ``model.val_fraction`` of the rest validates.
    ``binarize``: a threshold, or "dynamic" (values are probabilities, resampled per batch).
    ``stream``: read a .npy file larger than memory in chunks of ``ram_budget`` bytes.
    ``eval_k``: importance samples per example for the final scores of the whole train and
    test splits; None (default): the policy of :mod:`elbokit.evaluation` (exact where z can
    be summed over, else a k that fits a share of the training time, on the test split and
    a sample of the training split), recorded in ``summary["evaluation"]``.
    ``missing``: a table's extra missing-cell tokens (None: not asked for; then NaN in an
    array is refused), ``column_types``: ``{"column": type}`` overriding the inferred ones
    (:mod:`elbokit.data.columns`); a typed table trains the table likelihood, its columns
    printed through ``notify`` before training.
    ``notify``: called with each line worth telling a user (the CLI prints them).
    ``model.tensorboard``: log every epoch into ``out/tensorboard`` (:mod:`elbokit.tensorboard`;
    images when the data set's rows are images).
    Options and data are checked before anything is written."""
    started = time.perf_counter()
    out = Path(out) if out is not None else Path("runs") / time.strftime("fit-%Y%m%d-%H%M%S")
    _check_eval_k(eval_k)
    if model.tensorboard:
        require_tensorboard(model)
    if ram_budget is not None and not stream:
        raise ConfigError("--ram-budget sizes the chunks of --stream; add --stream")
    if stream and isinstance(model, Mixture):
        raise ConfigError("--stream trains VAEs; a mixture is fitted on data in memory")
    if binarize == "dynamic" and not isinstance(model, VAE):
        raise ConfigError("--binarize dynamic trains VAEs; this model needs fixed data "
                          "(e.g. --binarize 0.5)")
    model.torch_device()  # cuda without CUDA: one line
    refuse_unsupported(model, stream=stream)
    context = distributed.init(model.device)
    if context is not None:  # one name, rank 0's clock
        out = distributed.broadcast_object(out)
    if stream:
        config, run_data = _new_stream_run(model, data, binarize, test_fraction, ram_budget)
    else:
        if stream and (missing is not None or column_types):
            raise ConfigError("--stream reads a .npy file of numbers; --missing and "
                              "--column-types read tables in memory")
        config, run_data = _new_run(model, data, binarize, header, test_fraction, missing,
                                    column_types)
        schema = run_data.dataset.meta.get("schema")
        if schema is not None and _is_main(context):
            notify(f"{run_data.dataset.source}: {len(schema.columns)} columns, typed as follows "
                   "(--column-types NAME=TYPE,... overrides):")
            notify(schema.describe(run_data.dataset.x))
    # Check data, model and estimator before anything is written (on every rank).
    with memory_guard("the model", "use smaller --hidden widths, --latent or --components, "
                      "or fewer categories"):
        # a stream: a VAE's (refuse_unsupported), whose check reads streams
        model.check(run_data.training() if run_data.stream is not None  # type: ignore[arg-type]
                    else run_data.split("train"), where=config["data"]["source"])
    config["params"] = model.saved_params()

    def create() -> None:
        runs.create_run_dir(out, overwrite)
        runs.write_config(out, config)

    distributed.on_rank_zero(context, create)
    return _train_and_score(Run(out, config, model=model, data=run_data), context,
                            resume=False, eval_k=eval_k, write_report=write_report,
                            started=started)


def resume_run(out: str | Path, *, epochs: int | None = None, device: str | None = None,
               compile: bool | None = None, model: type | str | None = None,
               eval_k: int | None = None, write_report: bool = True,
               tensorboard: bool | None = None, notify: Notify = _quiet) -> Run | None:
    """Continue the run in ``out`` from its last checkpoint (bit for bit as if never
    stopped), then score and report it as :func:`fit_run` does. ``epochs``: extend the run
    to this many in all; ``device``/``compile``/``tensorboard``: override the run's own (e.g.
    continue a GPU run on a CPU; log the epochs still to come for TensorBoard, appended to
    ``out/tensorboard``); ``model``: a user's model class or reference, again."""
    started = time.perf_counter()
    out = Path(out)
    _check_eval_k(eval_k)
    config = runs.read_config(out, kinds=tuple(MODEL_KINDS))
    params = dict(config["params"])
    finished = runs.check_resume_epochs(out, params.get("epochs", DEFAULT_EPOCHS), epochs)
    for name, value in (("epochs", epochs), ("device", device), ("compile", compile),
                        ("tensorboard", tensorboard)):
        if value is not None:
            params[name] = value
    kind = config.get("kind", "vae")
    if kind == "custom":
        params["model"] = plugins.check_reference(config["model"]["reference"], model, str(out))
    try:
        estimator = MODEL_KINDS[kind](**params)
    except TypeError as e:  # a hand-edited or foreign config.json
        raise runs.CheckpointError(f"{out}/config.json: malformed model options ({e})") from None
    estimator.torch_device()
    if estimator.tensorboard:
        require_tensorboard(estimator)
    refuse_unsupported(estimator, stream=bool(config["data"].get("stream")))
    context = distributed.init(estimator.device)
    run_data = runs.prepare_data(config["data"])
    runs.check_fingerprint(run_data, config)
    config["params"] = estimator.saved_params()
    distributed.on_rank_zero(context, lambda: runs.write_config(out, config))
    if finished is not None and finished >= estimator.epochs and _is_main(context):
        notify(f"(the run has finished its {finished} epochs: nothing to train; its scores, "
               "summary and report are computed again from the saved model)")
    return _train_and_score(Run(out, config, model=estimator, data=run_data), context,
                            resume=True, eval_k=eval_k, write_report=write_report,
                            started=started)


def _check_eval_k(eval_k: int | None) -> None:
    if eval_k is not None and eval_k < 2:
        raise ConfigError(f"--eval-k must be at least 2 (the standard error needs two samples), "
                          f"not {eval_k}")


def _is_main(context) -> bool:
    return context is None or context.is_main


def refuse_unsupported(model: LatentModel, stream: bool = False, sweep: bool = False) -> None:
    """What does not run under torchrun, refused on every rank before anything starts."""
    if not distributed.launched():
        return
    if stream:
        raise ConfigError("--stream runs in one process: under torchrun every rank would read "
                          "the whole file; run it without torchrun")
    if sweep:
        raise ConfigError("elbokit sweep trains its members one after another in one process; "
                          "under torchrun, train each member with elbokit fit --beta B --out DIR")
    if isinstance(model, Mixture) and model.fit_method == "em":
        raise ConfigError("--fit em takes no gradient steps to spread over processes; run it "
                          "without torchrun, or use --fit gradient")


def _new_stream_run(model: LatentModel, data: str, binarize, test_fraction: float,
                    ram_budget: int | None) -> tuple[dict, runs.RunData]:
    """A streamed run: only the held-out rows and a training sample are read here; the whole
    file is checked by ``model.check`` (one pass, chunk by chunk) before anything is written."""
    if data in NAMED:
        raise ConfigError(f"--stream reads a .npy file; {data!r} is a named data set, "
                          "which fits in memory: drop --stream")
    record, run_data = runs.stream_run(data, ram_budget or parse_size(DEFAULT_BUDGET), binarize,
                                       model.seed, test_fraction, model.val_fraction)
    _image_shape_from_data(model, run_data.dataset.image_shape)
    return _run_config(model, record), run_data


def _new_run(model: LatentModel, data: str, binarize, header: str, test_fraction: float,
             missing: Sequence[str] | None = None, column_types: dict[str, str] | None = None
             ) -> tuple[dict, runs.RunData]:
    dataset = runs.load_data(data, binarize, header, missing, column_types)
    schema = dataset.meta.get("schema")
    if schema is not None:
        # A table of typed columns (or data with missing cells): the VAE's table likelihood.
        if not isinstance(model, VAE):
            raise ConfigError(f"{dataset.source}: a table of typed columns or missing cells "
                              "trains a VAE (--model vae), whose likelihood types each column")
        model.table_schema = schema.to_dict()
    if isinstance(model, VAE) and model.likelihood == "categorical" and np.all(dataset.x >= 0):
        # Count categories over all the data, so held-out codes unseen in training still fit.
        model.n_categories = int(dataset.x.max()) + 1
        if model.n_categories > MAX_CATEGORIES:  # the decoder has dim * categories outputs
            raise DataError(f"{dataset.source}: codes up to {dataset.x.max():g} would make "
                            f"{model.n_categories:,} categories per feature (at most "
                            f"{MAX_CATEGORIES:,}); recode the values as 0, 1, ..., K-1")
    _image_shape_from_data(model, dataset.image_shape)
    record = runs.data_record(data, dataset, binarize, model.seed, test_fraction,
                              model.val_fraction, missing, column_types)
    return _run_config(model, record), runs.prepare_data(record, dataset)


def _run_config(model: LatentModel, data_record: dict) -> dict:
    config = {"data": data_record, "kind": model.kind}
    if model.kind == "custom":  # to tell a moved or edited source file on load
        reference = model.reference()
        config["model"] = {"reference": reference,
                           "source_sha256": plugins.source_digest(reference)}
    return config


def _image_shape_from_data(model: LatentModel, shape: tuple | None) -> None:
    """A conv net on images of the data set's own shape (e.g. a .npy of [n, 7, 9]);
    [n, a, b, c] arrays are left to ``image_shape`` (channels first or last is a guess)."""
    if (isinstance(model, VAE) and model.image_shape is None
            and "conv" in (model.encoder_architecture(), model.decoder)
            and shape is not None and len(shape) == 2):
        model.image_shape = (1, *shape)


def _train_and_score(run: Run, context, resume: bool, eval_k: int | None,
                     write_report: bool, started: float) -> Run | None:
    """Train, score, diagnose, draw and report; ``started``: the clock (perf_counter) when the
    command began its set-up, for ``summary["timings"]``."""
    model, run_data, out = run.model, run.data, run.path
    assert model is not None and run_data is not None  # fit_run and resume_run set both
    source = run.config["data"]["source"]
    clock = time.perf_counter()
    # Seconds of each phase, in summary.json; "data": reading and checking the data and options
    # (the interpreter and imports before it are not counted: benchmarks/fit_phases.py does).
    timings = {"data": round(clock - started, 3)}

    def lap(phase: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[phase] = round(now - clock, 3)
        clock = now

    try:
        # The data set's image shape, which its rows do not carry: for TensorBoard's images.
        with image_rows(run_data.dataset.image_shape):
            model.fit(run_data.training(),  # type: ignore[arg-type]  # a stream: a VAE, as above
                      X_val=run_data.split("val") if model.val_fraction > 0 else None,
                      run_dir=out, resume=resume, where=source)
    except CheckpointWriteError as e:  # full disk, read-only directory: what to do then
        raise CheckpointWriteError(f"{e}; once fixed, continue with: elbokit fit --out {out} "
                                   "--resume", e) from e
    if not _is_main(context):  # rank 0 evaluates, writes the summary and the report
        return None
    lap("training")
    summary = {"epochs_trained": model.epochs_trained_, "stopped_early": model.stopped_early_,
               "splits": {}}
    plan = _plan_evaluation(model, run_data, eval_k, figures.read_history(out))
    for split, (x, rows) in plan.pop("rows").items():
        with in_file_rows(rows):  # a warning names the data's rows
            summary["splits"][split] = model.evaluate(x, k=plan["k"], iwae_k=50)
    lap("evaluation")
    summary["evaluation"] = {**plan, "seconds": timings["evaluation"]}
    labels = run_data.dataset.y
    if isinstance(model, Mixture) and labels is not None and len(run_data.splits["test"]):
        # How well an unsupervised z finds the classes: agreement of components and labels.
        test = run_data.splits["test"]
        summary["adjusted_rand_index"] = float(adjusted_rand_score(
            labels[test], model.predict(run_data.dataset.x[test])))
    # The diagnostics and figures work on the CPU (they read tensors back as numpy arrays);
    # the scores above ran on the training device.
    model.module_.cpu()
    split = figures.held_out_split(run_data)
    summary["diagnostics"] = {"split": split, **figures.diagnose(
        model, run_data.split(split), summary["splits"][split])}
    if getattr(model, "schema_", None) is not None:  # a table: its most unusual rows
        summary["unusual_rows"] = _unusual_rows(model, run_data, split)
    lap("diagnostics")
    summary["timings"] = timings
    write_json(out / "summary.json", summary)
    run.summary = summary
    if write_report:
        try:
            figures.draw_run(model, out, run_data, summary["diagnostics"])
            run.report_path = report.write_report(out)
        except (ElbokitError, OSError, ValueError) as e:
            # Training is saved: a failure here is a warning, never the loss of the run.
            warnings.warn(f"the figures or report could not be written ({e}); the trained "
                          f"model is saved; retry with: elbokit report {out} --redraw",
                          stacklevel=2)
        else:  # the report's own time, added once it is written
            lap("report")
            write_json(out / "summary.json", summary)
    return run


UNUSUAL_SHOWN = 10  # the rows a table run's summary and report show
# At most this many held-out rows are scored for them (a seeded sample), with 100 importance
# samples: the cells' surprise takes a pass per column, so its cost grows with the columns.
UNUSUAL_SCORED = 1000
UNUSUAL_K = 100


def _unusual_rows(model: VAE, run_data: runs.RunData, split: str) -> list[dict]:
    """The :data:`UNUSUAL_SHOWN` rows of ``split`` with the highest anomaly score (each
    cell's surprise against its column's in at most :data:`REFERENCE_ROWS` training rows;
    :meth:`elbokit.api.VAE.score_rows`, :data:`UNUSUAL_K` importance samples): their place in the file,
    scores, and most unusual cell with its value as the file wrote it."""
    rng = np.random.default_rng(0)
    rows = run_data.splits[split]
    rows = np.sort(rng.permutation(rows)[:UNUSUAL_SCORED])
    train = run_data.split("train")
    reference = train[rng.permutation(len(train))[:REFERENCE_ROWS]]
    x = run_data.dataset.x[rows]
    scores = model.score_rows(x, k=UNUSUAL_K, reference=reference)
    worst = imputation.most_unusual_cells(scores["surprise"], scores["reference_median"],
                                          scores["reference_spread"])
    table: Any = run_data.dataset.meta.get("table")  # a MixedTable, or None
    lines = table is not None and not run_data.dataset.source.lower().endswith(".parquet")
    names = [c.name for c in model.schema_.columns]  # type: ignore[union-attr]  # a table's run
    found = []
    for i in np.argsort(-scores["anomaly"])[:UNUSUAL_SHOWN]:
        row, column = int(rows[i]), int(worst[i])
        value = (table.cells[row][table.field(names[column])] if table is not None
                 else f"{x[i, column]:.6g}")
        found.append({"row": row, "line": int(table.lines[row]) if lines else None,
                      "anomaly": float(scores["anomaly"][i]),
                      "log_likelihood": float(scores["log_likelihood"][i]),
                      "stderr": float(scores["stderr"][i]), "cell": names[column], "value": value,
                      "surprise": float(scores["surprise"][i, column])})
    return found


def _plan_evaluation(model: LatentModel, run_data: runs.RunData, eval_k: int | None,
                     history: list[dict]) -> dict:
    """What the final evaluation scores, with which k (the policy of
    :mod:`elbokit.evaluation`): ``{"k", "chosen", "budget_seconds", "training_seconds",
    "train_rows", "train_rows_of", "rows": {split: (x, file rows)}}``. ``chosen``: "exact"
    (z is summed over; nothing sampled), "given" (``eval_k``) or "auto"."""
    training_seconds = float(sum(h.get("seconds", 0.0) for h in history))
    x_train, rows_train = run_data.split("train"), run_data.file_rows("train")
    rows = {}
    plan = {"k": eval_k, "chosen": "given", "budget_seconds": None,
            "training_seconds": round(training_seconds, 3), "train_rows_of": len(x_train)}
    if eval_k is None:
        module = model._fitted()
        if bounds.enumerable(cast("LatentVariableModel", module), "score"):
            plan["chosen"] = "exact"
        else:
            sample = evaluation.training_sample(len(x_train), model.seed)
            if sample is not None:
                x_train = x_train[sample]
                rows_train = rows_train[sample] if rows_train is not None else None
            x_test = run_data.split("test")
            budget = evaluation.budget_seconds(training_seconds)
            pilot = model.as_tensor((x_test if len(x_test) else x_train)[:evaluation.PILOT_ROWS])
            cost = evaluation.seconds_per_draw(module, pilot)
            plan.update(chosen="auto", budget_seconds=round(budget, 3),
                        k=evaluation.choose_k(cost, len(x_train) + len(x_test), budget))
    plan["train_rows"] = len(x_train)
    for split, (x, where) in (("train", (x_train, rows_train)),
                              ("test", (run_data.split("test"), run_data.file_rows("test")))):
        if len(x):
            rows[split] = (x, where)
    return {**plan, "rows": rows}


# -- sweeps --------------------------------------------------------------------------------
def member_dir(out: Path, beta: float) -> Path:
    return out / f"beta-{beta:g}"


@dataclass
class Sweep:
    """A sweep directory: one run per KL weight beta (``runs``: beta -> member directory)
    and ``points``: rate, distortion, ELBO and active units per beta on the held-out split
    (None for members not finished)."""

    path: Path
    betas: list[float]
    points: list[dict]
    report_path: Path | None = None


def sweep(model: VAE, data: str, betas: Sequence[float], out: str | Path, *,
          options: dict | None = None, overwrite: bool = False, write_report: bool = True,
          notify: Notify = _quiet, **run_options) -> Sweep:
    """Train one copy of ``model`` per KL weight in ``betas`` into ``out/beta-B/`` (each an
    ordinary run, see :func:`fit_run` for ``run_options``), then compare them in the
    rate-distortion plane (sweep.json, rate_distortion.png/.svg, report.html).

    Resumable: calling it again skips finished members and resumes an interrupted one; more
    betas with the same ``options`` extend the sweep; other options are refused
    (``overwrite`` starts over). ``options``: what must match to continue (default: the
    model's parameters and ``data`` and ``run_options``)."""
    if not isinstance(model, VAE):
        raise ConfigError("a sweep varies the VAE's KL weight beta; a mixture has none")
    refuse_unsupported(model, sweep=True)
    out = Path(out)
    if options is None:
        params = {k: v for k, v in model.saved_params().items()
                  if k not in ("beta", "progress", "tensorboard")}
        # As config.json holds them (JSON: tuples become lists), to compare on continuing.
        options = json.loads(json.dumps({"data": data, "header": "auto", **run_options,
                                         **params}, default=str))
    clone(model).set_params(beta=betas[0]).train_config()  # refuse bad options first
    all_betas = _prepare_sweep(out, options, list(betas), overwrite)
    for beta in betas:
        member = member_dir(out, beta)
        if (member / "summary.json").exists():
            notify(f"beta = {beta:g}: finished before, skipped ({member})")
            continue
        resume = (member / "config.json").exists()
        notify(f"beta = {beta:g}: {'resuming' if resume else 'training'} {member}")
        if resume:
            resume_run(member, eval_k=run_options.get("eval_k"),
                       write_report=write_report, notify=notify)
        else:
            fit_run(clone(model).set_params(beta=beta), data, member, write_report=write_report,
                    notify=notify, **run_options)
    points = _collect(out, all_betas)
    write_json(out / "sweep.json", stamp("elbokit.sweep", {"split": points[0]["split"],
                                                          "runs": points}))
    plots.rate_distortion([p for p in points if p["rate"] is not None],
                          path=out / "rate_distortion.png", svg_path=out / "rate_distortion.svg")
    result = Sweep(out, all_betas, points)
    if write_report:
        result.report_path = report.write_report(out)
    return result


def _prepare_sweep(out: Path, options: dict, betas: list[float], overwrite: bool) -> list[float]:
    """Create or check the sweep directory; returns every beta it holds after this call."""
    if out.exists() and overwrite:
        runs.read_config(out, kinds=("sweep",))  # only ever delete a sweep
        shutil.rmtree(out)
    if (out / "config.json").exists():
        config = runs.read_config(out, kinds=("sweep",))
        # Sweeps written before --header read their data with "auto"; those written before
        # options were filtered by model (mixture options in a VAE sweep) still continue.
        saved = options_for("vae", {"header": "auto", **config["params"]})
        differ = sorted(k for k in set(saved) | set(options) if saved.get(k) != options.get(k))
        if differ:
            raise ConfigError(f"--out {out}: holds a sweep with other options ({', '.join(differ)}); "
                              "repeat its options, use --overwrite, or another --out")
        all_betas = list(dict.fromkeys([*config["betas"], *betas]))
    else:
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise ConfigError(f"--out {out}: exists and is not an elbokit sweep")
        out.mkdir(parents=True, exist_ok=True)
        all_betas = list(betas)
    runs.write_config(out, {"kind": "sweep", "betas": all_betas, "params": options})
    return all_betas


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
