"""TensorBoard event files (``elbokit fit --tensorboard``, a facade's ``tensorboard=True``), read
back with TensorBoard's own reader: the run's own numbers, one value per epoch, also across a
resume after a session that logged an epoch it never checkpointed; images of the right size
and content; no images (with the reason) for a table; and the optional package: never
imported unless asked for, and without it one line saying how to install it."""

from __future__ import annotations

import ast
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from commands import run
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from elbokit import VAE, ConfigError, Mixture, workflows
from elbokit.data import load

PACKAGE = Path(__file__).resolve().parents[1] / "elbokit"
# Two epochs of a small VAE on the bundled digits (8 x 8 images); the scores at the end
# with k = 2 only, and no report: what is tested here is the training log.
FAST = ["--data", "digits", "--hidden", "16", "--latent-dim", "3", "--eval-k", "2", "--quiet",
        "--no-report"]
TERMS = ("elbo", "reconstruction", "kl")


def events(directory: Path) -> EventAccumulator:
    """Every event under ``directory``, as TensorBoard reads them (all kept: no sampling)."""
    accumulator = EventAccumulator(str(directory), size_guidance={"scalars": 0, "images": 0,
                                                                  "tensors": 0})
    return accumulator.Reload()


def logged(accumulator: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    return [(event.step, event.value) for event in accumulator.Scalars(tag)]


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def untimed(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in record.items() if k != "seconds"} for record in history]


def pixels(image) -> np.ndarray:
    """An image event's grey levels, ``[height, width]`` (uint8; R = G = B for grey images)."""
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(image.encoded_image_string)).convert("RGB"))
    assert (rgb == rgb[..., :1]).all()
    return rgb[..., 0]


def assert_the_runs_numbers(accumulator: EventAccumulator, history: list[dict]) -> None:
    """One value per epoch of every scalar, equal to the run's own record of the epoch
    (TensorBoard keeps float32), and the KL per latent variable summing to the validation KL."""
    epochs = [record["epoch"] for record in history]
    for split, name in (("train", "train"), ("val", "validation")):
        for term in TERMS:
            assert logged(accumulator, f"{term}/{name}") == [
                (record["epoch"], float(np.float32(record[split][term]))) for record in history]
    assert logged(accumulator, "learning_rate") == [
        (record["epoch"], float(np.float32(record["lr"]))) for record in history]
    dims = [tag for tag in accumulator.Tags()["scalars"] if tag.startswith("kl_per_dimension/")]
    assert sorted(dims) == ["kl_per_dimension/0", "kl_per_dimension/1", "kl_per_dimension/2"]
    per_dimension = np.array([[value for _, value in logged(accumulator, tag)] for tag in dims])
    assert all([step for step, _ in logged(accumulator, tag)] == epochs for tag in dims)
    # The same KL summed in other orders, in float32 (the validation batches' sums, the
    # diagnostics' per-variable means), each logged value rounded to float32: measured 3e-8
    # relative here (1.2e-7 over 40 epochs of 8 variables); 1e-6 is float32's resolution
    # (1.2e-7) times the few terms added.
    np.testing.assert_allclose(per_dimension.sum(0), [r["val"]["kl"] for r in history], rtol=1e-6)


def tensorboard_imports(nodes) -> list[ast.AST]:
    """The import statements among ``nodes`` that import the tensorboard package."""
    found = []
    for node in nodes:
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level
                 else [])
        if any(n.split(".")[0] == "tensorboard" or n.startswith("torch.utils.tensorboard")
               for n in names):
            found.append(node)
    return found


def outside_functions(node: ast.AST):
    """The nodes below ``node`` that run when its module is imported (not in a function)."""
    for child in ast.iter_child_nodes(node):
        if not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield child
            yield from outside_functions(child)


def test_the_package_is_imported_only_inside_the_function_that_needs_it():
    """No module of elbokit imports tensorboard when it is imported; the one import is in a
    function (a fit without the flag never calls it: see the next test)."""
    anywhere, at_import = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        if "tensorboard" not in text:  # cannot import it (and parsing every module takes ~1 s)
            continue
        tree = ast.parse(text)
        anywhere += [path.name for _ in tensorboard_imports(ast.walk(tree))]
        at_import += [path.name for _ in tensorboard_imports(outside_functions(tree))]
    assert anywhere == ["tensorboard.py"] and at_import == []


def test_fit_logs_the_runs_numbers_once_per_epoch_also_across_a_resume(tmp_path, capsys,
                                                                        monkeypatch):
    with monkeypatch.context() as m:  # as if the tensorboard package were not installed
        m.setitem(sys.modules, "tensorboard", None)
        m.delitem(sys.modules, "torch.utils.tensorboard", raising=False)
        code, _, err = run(capsys, "fit", *FAST, "--epochs", "2", "--out", tmp_path / "plain")
        assert code == 0, err  # without the flag nothing asks for the package
        code, _, err = run(capsys, "fit", *FAST, "--tensorboard", "--out", tmp_path / "refused")
        assert (code, err) == (2, "elbokit: error: --tensorboard needs the tensorboard package: "
                               "pip install 'elbokit[tensorboard]'\n")
        assert not (tmp_path / "refused").exists()  # refused before anything was written

    out = tmp_path / "run"
    code, _, err = run(capsys, "fit", *FAST, "--epochs", "2", "--tensorboard", "--out", out)
    assert code == 0, err
    history = metrics(out)
    assert untimed(history) == untimed(metrics(tmp_path / "plain"))  # logging changed nothing
    board = events(out / "tensorboard")
    assert_the_runs_numbers(board, history)
    summary = json.loads((out / "summary.json").read_text())
    assert [step for step, _ in logged(board, "elbo/train")] == list(
        range(1, summary["epochs_trained"] + 1))

    # Images, one per epoch: 64 samples in 8 rows of 8 digits (8 x 8 pixels), and 16
    # validation rows, each row of 8 above their 8 reconstructions.
    samples, reconstructions = board.Images("samples"), board.Images("reconstructions")
    assert [i.step for i in samples] == [i.step for i in reconstructions] == [1, 2]
    assert {(i.width, i.height) for i in samples} == {(64, 64)}
    assert {(i.width, i.height) for i in reconstructions} == {(64, 32)}
    # Their content: the validation rows themselves (0/1 digits) in the originals' rows ...
    fitted = workflows.Run.load(out)
    shown = fitted.examples("val")[0][:16]

    def tiles(grid: np.ndarray) -> np.ndarray:  # [rows * 8, cols * 8] -> [rows * cols, 64]
        return grid.reshape(-1, 8, 8, 8).transpose(0, 2, 1, 3).reshape(-1, 64)

    pairs = tiles(pixels(reconstructions[-1])).reshape(2, 2, 8, 64)  # [band, original|rebuilt]
    assert np.array_equal(pairs[:, 0].reshape(16, 64), shown * 255)
    # ... and the kept model's samples in the last epoch's image (it kept the last epoch,
    # whose validation score was its best): the same 64 draws, to the 8-bit grey level.
    assert history[-1]["val"]["elbo"] > history[0]["val"]["elbo"]
    drawn = fitted.fitted().sample(64, seed=0, mean=True)
    assert np.abs(tiles(pixels(samples[-1])) - drawn * 255).max() <= 1

    # A session that logged epoch 3 and was killed before checkpointing it (simulated: an
    # event written at step 3 after the checkpoint of epoch 2). Resumed without the flag,
    # the run logs as it was started; epoch 3 appears once, with the number the run kept.
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(out / "tensorboard")) as stray:
        stray.add_scalar("elbo/train", 1e6, 3)
    code, _, err = run(capsys, "fit", "--resume", "--epochs", "4", "--eval-k", "2", "--quiet",
                       "--no-report", "--out", out)
    assert code == 0, err
    history = metrics(out)
    assert [record["epoch"] for record in history] == [1, 2, 3, 4]
    board = events(out / "tensorboard")
    assert_the_runs_numbers(board, history)
    assert [i.step for i in board.Images("samples")] == [1, 2, 3, 4]
    assert len(list((out / "tensorboard").iterdir())) == 3  # one event file per session


def test_a_facade_logs_a_table_without_images_and_says_why(tmp_path):
    """A table's rows are no images, and a VampPrior has no KL per variable: each says so in
    a text entry instead. Without validation rows there are no validation curves."""
    x = np.random.default_rng(0).normal(size=(40, 5))
    vae = VAE(latent_dim=2, hidden=(8,), prior="vamp:2", epochs=2, val_fraction=0, seed=0,
              tensorboard=True)
    with pytest.raises(ConfigError, match=r"pass fit\(\.\.\., run_dir=DIR\)"):
        vae.fit(x)
    vae.fit(x, run_dir=tmp_path / "table")
    board = events(tmp_path / "table" / "tensorboard")
    assert sorted(board.Tags()["scalars"]) == ["elbo/train", "kl/train", "learning_rate",
                                               "reconstruction/train"]
    assert logged(board, "elbo/train") == [
        (r["epoch"], float(np.float32(r["train"]["elbo"]))) for r in vae.history_]
    assert board.Tags()["images"] == []
    why = {tag: board.Tensors(tag)[0].tensor_proto.string_val[0].decode()
           for tag in board.Tags()["tensors"]}
    assert why["images/text_summary"].startswith("No images: the rows are not known to be images")
    assert why["kl_per_dimension/text_summary"].startswith("No KL per latent variable: this "
                                                           "model's posterior and prior")
    assert VAE.load(tmp_path / "table").tensorboard is False  # how it ran, not the model

    # A mixture fitted by EM has no epochs: refused before it runs.
    with pytest.raises(ConfigError, match="add --fit gradient"):
        Mixture(n_components=2, tensorboard=True).fit(load("digits").x[:50], run_dir=tmp_path / "em")
    assert not (tmp_path / "em").exists()
