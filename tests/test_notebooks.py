"""docs/notebooks/quickstart.ipynb runs in a Jupyter kernel of this interpreter (nbclient), and
shows what docs/howto/notebooks.md says it shows: progress bars, the model's HTML view, samples
and scores that beat a model without latent variables."""

from __future__ import annotations

import base64
import json
import re
import sys
from pathlib import Path

import nbformat
import numpy as np
from nbclient import NotebookClient

from elbokit import data

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "notebooks" / "quickstart.ipynb"
KERNEL = "elbokit-tests"
BAR = "%|"  # tqdm's text bar, "42%|####     |"
# Appended to the notebook by the test: the numbers the notebook printed, unrounded.
REPORT = ('import json\nprint(json.dumps({"elbo": scores["elbo"], "log_px": log_px["estimate"], '
          '"stderr": log_px["stderr"], "epochs": vae.epochs_trained_}))')


def kernel_of_this_interpreter(root: Path) -> None:
    """A kernelspec in ``root`` (made JUPYTER_PATH: searched first) that starts ipykernel on
    ``sys.executable``, under a name no user's kernelspec has."""
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "elbokit tests", "language": "python"}))


def test_the_quickstart_notebook_runs_in_a_kernel_of_this_interpreter(tmp_path, monkeypatch):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code), \
        "commit the notebook without outputs"

    kernel_of_this_interpreter(tmp_path / "jupyter")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter-data"))  # not the user's
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "jupyter-runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))  # no profile, no startup files
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's own (inline) backend
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # one thread, as every test process computes
    work = tmp_path / "work"
    work.mkdir()
    notebook.cells.append(nbformat.v4.new_code_cell(REPORT))
    NotebookClient(notebook, kernel_name=KERNEL, timeout=300,
                   resources={"metadata": {"path": str(work)}}).execute()

    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    errors = [out for out in outputs if out.output_type == "error"]
    assert not errors, "\n".join(f"{e.ename}: {e.evalue}" for e in errors)
    stderr = "".join(out.text for out in outputs
                     if out.output_type == "stream" and out.name == "stderr")
    # Bars in a kernel without ipywidgets: text on stderr, with no warning about the widgets.
    assert "training:" in stderr and BAR in stderr and "log p(x), k=200:" in stderr, stderr
    assert "warn" not in stderr.lower() and "IProgress" not in stderr, stderr

    def result(cell, kind: str) -> str:
        found = [out.data[kind] for out in cell.outputs
                 if out.output_type == "execute_result" and kind in out.data]
        assert len(found) == 1, cell.outputs
        return found[0]

    fit, sample, score, report = code[1], code[2], code[3], notebook.cells[-1]
    reported = json.loads(report.outputs[0].text)
    html = result(fit, "text/html")
    assert result(fit, "text/plain").startswith("VAE(epochs=50, hidden=(128,), ")  # its repr
    assert html.startswith('<div class="elbokit-model">')
    assert "fitted: VAE (latent gaussian:8, bernoulli likelihood), on 64 features" in html
    assert f"<p>{reported['epochs']} epochs logged; best validation ELBO " in html
    png = base64.b64decode(result(sample, "image/png"))
    assert png.startswith(b"\x89PNG") and (png[16:20], png[20:24]) == ((600).to_bytes(4, "big"),) * 2

    # The scores, against what is known without the model: binary pixels have log p(x) < 0,
    # the ELBO bounds log p(x) from below (within 4 standard errors of its estimate), and the
    # best model without a latent variable, each pixel a Bernoulli of its training frequency,
    # is beaten by several nats.
    x = data.load("digits").x
    train, test = x[:1400], x[1400:]
    p = (train.sum(axis=0) + 1) / (len(train) + 2)
    independent = float(np.mean(test @ np.log(p) + (1 - test) @ np.log(1 - p)))
    elbo, log_px, stderr_ = reported["elbo"], reported["log_px"], reported["stderr"]
    assert elbo <= log_px + 4 * stderr_ and log_px < 0
    assert log_px > independent + 3, (log_px, independent)
    printed = "".join(out.text for out in score.outputs if out.output_type == "stream"
                      and out.name == "stdout")
    assert re.search(rf"ELBO +{elbo:.2f}\n", printed), printed
    assert re.search(rf"log p\(x\) +{log_px:.2f} ± {stderr_:.2f}\n", printed), printed
    assert re.search(rf"independent pixels +{independent:.2f}\n", printed), printed
