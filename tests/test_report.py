"""``elbokit report``: a self-contained report.html rendered from a run directory's files.

The run directories are built by hand (config.json, metrics.jsonl, summary.json, a few tiny
PNGs), so nothing is trained here. The browser test renders the page in headless Chromium
when it is installed: a screenshot that is not blank, and every <img> decoded.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from elbokit import report
from elbokit.checkpoint import write_json
from elbokit.cli import main
from elbokit.runs import write_config

URL = re.compile(r"https?://", re.IGNORECASE)
FIGURE_NAMES = ["kl_per_dimension.png", "training_curves.png", "samples.png"]  # not in page order
EXTRA_FIGURE = "zz_extra <odd>.png"


def tiny_png(path: Path, seed: int = 0) -> None:
    """A small deterministic PNG (a random image), without a timestamp or software tag."""
    figure = Figure(figsize=(1.2, 0.9), dpi=40)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    ax.imshow(np.random.default_rng(seed).random((6, 8)), cmap="viridis")
    ax.set_title(f"figure {seed}", fontsize=6)
    figure.savefig(path, format="png", metadata={"Software": None})


def scores(elbo: float, recon: float, n: int, exact: float | None = None) -> dict:
    return {"elbo": elbo, "reconstruction": recon, "kl": recon - elbo,
            "iwae": {"value": elbo + 0.8, "k": 50},
            "log_likelihood": {"estimate": elbo + 1.1, "stderr": 0.0042, "k": 1000},
            "exact_log_likelihood": exact, "n_examples": n}


def make_run(run: Path, figures: list[str] = FIGURE_NAMES, summary: bool = True,
             collapsed: bool = True) -> Path:
    """A model run directory as ``elbokit fit`` leaves it, by hand."""
    run.mkdir(parents=True)
    write_config(run, {
        "kind": "vae",
        "data": {"source": "digits", "n_examples": 1797, "dim": 64, "image_shape": [8, 8],
                 "binarize": None, "fingerprint": "abc",
                 "split": {"seed": 0, "test_fraction": 0.2, "val_fraction": 0.1}},
        "params": {"latent_dim": 3, "hidden": [16, 16], "likelihood": "bernoulli", "beta": 1.0,
                   "encoder": "<b>bold</b> & co", "decoder": "see https://example.org/x"},
    })
    lines = [{"epoch": e, "train": {"elbo": -30.0 + 3 * e, "reconstruction": -28.0 + 3 * e, "kl": 2.0},
              "val": {"elbo": v, "reconstruction": v + 2.0, "kl": 2.0}, "seconds": 0.5}
             for e, v in ((1, -29.5), (2, -24.25), (3, -25.0))]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    if summary:
        write_json(run / "summary.json", {
            "epochs_trained": 3, "stopped_early": False,
            "splits": {"train": scores(-17.0087, -10.853, 1294), "test": scores(-18.0932, -12.0187, 359)},
            "diagnostics": {
                "split": "test", "n_examples": 359, "latent_dim": 3,
                "kl_per_dimension": [0.001, 0.002, 0.0005],
                "posterior_mean_variance": [0.0001, 0.002, 0.0],
                "active_threshold": 0.01, "active": [False, False, False], "active_units": 0,
                "gap": 1.1, "mutual_information": 0.02, "mutual_information_limit": 5.883,
                "collapsed": collapsed,
                "warnings": ["posterior collapse: all 3 <inactive>; try a lower --beta"] if collapsed else [],
            },
        })
    if figures:
        (run / "figures").mkdir()
        for seed, name in enumerate(figures):
            tiny_png(run / "figures" / name, seed)
    return run


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def check_self_contained(text: str) -> None:
    assert not URL.search(text), URL.search(text)
    assert "<script" not in text.lower()
    assert "<link" not in text.lower() and "@import" not in text and "url(" not in text
    for src in re.findall(r'<img[^>]*\ssrc="([^"]*)"', text):
        assert src.startswith("data:image/png;base64,")
    assert not re.search(r'(?:src|href)="(?!#|data:image/png;base64,|(?:[\w.%-]+|\.\.)/report\.html")', text)


def test_model_report_has_every_section(capsys, tmp_path):
    run = make_run(tmp_path / "my-run")
    tiny_png(run / "figures" / EXTRA_FIGURE, 9)
    code, out, err = cli(capsys, "report", run)
    assert code == 0, err
    path = run / "report.html"
    assert out == f"report: {path}\n"
    text = path.read_text(encoding="utf-8")
    check_self_contained(text)

    assert "<h1>my-run</h1>" in text and "VAE (latent gaussian:3" in text and "digits" in text
    assert re.search(r"report written \d{4}-\d\d-\d\d \d\d:\d\d", text)
    for anchor, heading in [("configuration", "Configuration"), ("summary", "Summary"),
                            ("diagnostics", "Diagnostics"), ("figures", "Figures"),
                            ("training", "Training log")]:
        assert f'<section id="{anchor}">\n<h2>{heading}</h2>' in text
        assert f'<a href="#{anchor}">' in text
    # Strings from files are escaped, URLs in them defused.
    assert "<b>" not in text and "&lt;b&gt;bold&lt;/b&gt; &amp; co" in text
    assert "see https&#58;//example.org/x" in text
    assert "&lt;inactive&gt;" in text
    # Scores: one row per split, nats with 3 decimals, log p(x) with its standard error.
    assert "<td>train</td>" in text and "<td>test</td>" in text
    assert "-18.093" in text and "-12.019" in text and "-16.993 &plusmn; 0.004" in text
    assert "exact log p(x)" not in text  # no split has one
    assert "IWAE with k = 50" in text and "k = 1000" in text
    assert "ELBO = reconstruction &minus; KL" in text and "3 epochs trained" in text
    # Diagnostics and the collapse warning.
    assert text.count('class="warning"') == 2  # the box, and the pointer to it at the top
    assert "Warning: posterior collapse" in text and 'role="alert"' in text
    for phrase in ("Active units: 0 of 3", "Gap log p(x) &minus; ELBO: 1.100 nats",
                   "Mutual information I(x; z): 0.02 nats", "at most log n = 5.88", "KL per dimension"):
        assert phrase in text
    assert text.count('<tr class="inactive">') == 3
    # Figures: every PNG inlined byte for byte, known ones in page order, the extra one last.
    images = re.findall(r'<img src="data:image/png;base64,([^"]+)" alt="([^"]+)"', text)
    assert len(images) == text.count("<img") == len(FIGURE_NAMES) + 1
    names = ["training_curves.png", "samples.png", "kl_per_dimension.png", EXTRA_FIGURE]
    for (data, alt), name in zip(images, names, strict=True):
        assert base64.b64decode(data) == (run / "figures" / name).read_bytes()
        assert alt
    assert text.count("<figcaption>") == len(names)
    assert "<figcaption><code>zz_extra &lt;odd&gt;.png</code></figcaption>" in text
    # Training log: epochs and the best validation ELBO with its epoch.
    assert "3 epochs logged; best validation ELBO -24.250 nats at epoch 2" in text


def test_write_report_replaces_the_file_atomically(tmp_path):
    run = make_run(tmp_path / "run", figures=[])
    (run / "report.html").write_text("old")
    path = report.write_report(run)
    assert path == run / "report.html" and path.read_text().startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "metrics.jsonl", "report.html",
                                                    "summary.json"]


def test_missing_files_still_give_a_report(tmp_path):
    run = make_run(tmp_path / "fresh", figures=[], summary=False)
    (run / "metrics.jsonl").unlink()
    text = report.write_report(run).read_text()
    check_self_contained(text)
    assert "No evaluation yet" in text and f"elbokit evaluate {run}" in text
    assert "No diagnostics yet" in text and "No figures yet" in text and "No training log" in text
    assert "<img" not in text and 'class="warning"' not in text


def test_unreadable_optional_files_are_named_and_evaluation_json_is_used(tmp_path):
    run = make_run(tmp_path / "run", figures=[], summary=False)
    (run / "summary.json").write_text("{not json")
    (run / "figures").mkdir()
    (run / "figures" / "samples.png").write_bytes(b"not a png")
    with open(run / "metrics.jsonl", "a") as f:
        f.write("{truncated\n")
    write_json(run / "evaluation.json", {**scores(-19.5, -13.0, 359, exact=-18.25), "split": "test",
                                         "diagnostics": {"active_units": 2, "latent_dim": 3,
                                                         "collapsed": False, "warnings": []}})
    text = report.write_report(run).read_text()
    check_self_contained(text)
    assert "summary.json: not a readable JSON file" in text
    assert "figures/samples.png: not a readable PNG file" in text
    assert "1 unreadable line skipped" in text
    assert "<td>test (evaluation.json)</td>" in text and "exact log p(x)" in text and "-18.250" in text
    assert "From evaluation.json" in text and "Active units: 2 of 3" in text
    assert "No posterior collapse" in text and 'class="warning"' not in text


def make_sweep(sweep: Path, low_beta_elbo: float = -20.5) -> Path:
    """A sweep over beta 0.1, 1, 10 (10 unfinished); beta = 0.1 scores ``low_beta_elbo``,
    beta = 1 -18. Its config.json lists mixture options, as sweeps written before issue 12."""
    sweep.mkdir()
    write_config(sweep, {"kind": "sweep", "betas": [0.1, 1.0, 10.0],
                         "params": {"data": "digits", "latent_dim": 2, "epochs": 5, "model": "vae",
                                    "components": 10, "fit": "em", "max_iter": 200, "n_init": 1}})
    points = [{"beta": 0.1, "dir": "beta-0.1", "rate": 12.5, "distortion": -12.5 - low_beta_elbo,
               "elbo": low_beta_elbo, "reconstruction": 12.5 + low_beta_elbo, "kl": 12.5,
               "active_units": 2},
              {"beta": 1.0, "dir": "beta-1", "rate": 6.0, "distortion": 12.0, "elbo": -18.0,
               "reconstruction": -12.0, "kl": 6.0, "active_units": 2},
              {"beta": 10.0, "dir": "beta-10", "rate": None, "distortion": None, "elbo": None,
               "reconstruction": None, "kl": None, "active_units": None}]
    write_json(sweep / "sweep.json", {"format": "elbokit.sweep", "split": "test", "runs": points})
    tiny_png(sweep / "rate_distortion.png")
    make_run(sweep / "beta-0.1", figures=[])
    (sweep / "beta-0.1" / "report.html").write_text("member report")
    make_run(sweep / "beta-1", figures=[])  # no report.html: no link
    return sweep


def test_sweep_report_has_its_table_figure_and_links(capsys, tmp_path):
    sweep = make_sweep(tmp_path / "sweep")
    code, out, err = cli(capsys, "report", sweep)
    assert code == 0 and out == f"report: {sweep / 'report.html'}\n", err
    text = (sweep / "report.html").read_text()
    check_self_contained(text)
    assert "<h1>sweep</h1>" in text and "β sweep over β = 0.1, 1, 10" in text
    for anchor in ("configuration", "runs", "rate-distortion"):
        assert f'<section id="{anchor}">' in text
    assert "<code>latent_dim</code>" in text
    assert '<a href="beta-0.1/report.html">beta-0.1</a>' in text
    assert "<td>beta-1</td>" in text and 'href="beta-1/' not in text
    assert "<td>beta-10 (not finished)</td>" in text
    assert text.count('<tr class="best">') == 1 and "<strong>-18.000</strong> (best)" in text
    assert "12.500" in text and "8.000" in text and '<td class="num">0.1</td>' in text
    # Issue 12 (11): the text says what the table shows, and lists only a VAE's options.
    assert "the best ELBO, -18.000 nats, came from β = 1. That is β = 1" in text
    assert "maximizes the ELBO itself" not in text
    for option in ("components", "fit", "max_iter", "n_init"):
        assert f"<code>{option}</code>" not in text
    member = report.write_report(sweep / "beta-1").read_text()  # a member links back to the sweep
    check_self_contained(member)
    assert 'One run of the sweep <a href="../report.html">sweep</a>' in member
    assert text.count("<img") == 1 and "lines of equal ELBO" in text and "collapses" in text


def test_sweep_report_names_the_best_beta_from_its_scores(tmp_path):
    """Issue 12 (11): the report claimed "β = 1 maximizes the ELBO itself" above a table in
    which β = 0.5 was best; the text now comes from the scores."""
    text = report.write_report(make_sweep(tmp_path / "sweep", low_beta_elbo=-17.25)).read_text()
    assert "<strong>-17.250</strong> (best)" in text
    assert "the best ELBO, -17.250 nats, came from β = 0.1. β = 1 (-18.000) trains on" in text
    assert "as here." in text and "That is β = 1" not in text
    (tmp_path / "sweep" / "sweep.json").write_text('{"runs": []}')  # no scores: no claim
    text = report.write_report(tmp_path / "sweep").read_text()
    assert "the best ELBO" not in text and "β = 1 (" not in text


def test_one_line_errors_and_no_report(capsys, tmp_path):
    (tmp_path / "plain").mkdir()
    classifier = tmp_path / "classifier"
    classifier.mkdir()
    write_config(classifier, {"kind": "classifier", "data": {"source": "sms-spam"}})
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{")
    cases = {tmp_path / "plain": "not an elbokit run (no config.json)",
             tmp_path / "absent": "no such run directory",
             classifier: "a 'classifier' run (from elbokit classify --out)",
             broken: "not a readable JSON file"}
    for directory, message in cases.items():
        code, out, err = cli(capsys, "report", directory)
        assert code == 2 and out == ""
        assert err.startswith("elbokit: error: ") and err.count("\n") == 1 and message in err, err
        assert not (directory / "report.html").exists()


def _chromium(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [shutil.which("chromium") or "chromium", "--headless", "--no-sandbox", "--disable-gpu",
               "--no-first-run", "--disable-extensions", "--disable-background-networking",
               f"--user-data-dir={cwd / 'chromium-profile'}", *args]
    try:
        return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60, check=True)
    except subprocess.CalledProcessError as e:
        raise AssertionError(f"chromium failed ({e.returncode}): {e.stderr[-2000:]}") from None


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Chromium (headless) installed")
def test_report_renders_in_a_browser(tmp_path):
    run = make_run(tmp_path / "browser-run")
    path = report.write_report(run)
    n_figures = len(FIGURE_NAMES)

    # 1. A screenshot of the page as it is: not blank.
    shot = tmp_path / "shot.png"
    done = _chromium("--hide-scrollbars", "--window-size=1000,2000", f"--screenshot={shot}",
                     path.as_uri(), cwd=tmp_path)
    assert shot.exists(), done.stderr[-2000:]
    from matplotlib.image import imread

    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (2000, 1000)
    assert pixels.std() > 0.05 and (pixels < 0.9).mean() > 0.01, "the screenshot is blank"

    # 2. Every <img> decoded: a copy of the page with a script (the report has none) that puts
    #    "loaded/total" into the title once the page has loaded.
    probe = tmp_path / "probe.html"
    script = ("<script>window.addEventListener('load', function () {"
              "var imgs = Array.from(document.images);"
              "var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; });"
              "document.title = 'loaded ' + ok.length + '/' + imgs.length; });</script>")
    probe.write_text(path.read_text(encoding="utf-8").replace("</body>", script + "</body>"),
                     encoding="utf-8")
    done = _chromium("--virtual-time-budget=5000", "--dump-dom", probe.as_uri(), cwd=tmp_path)
    title = re.search(r"<title>(.*?)</title>", done.stdout)
    assert title is not None, done.stderr[-2000:]
    assert title.group(1) == f"loaded {n_figures}/{n_figures}", (title.group(1), done.stderr[-2000:])


def test_the_summary_note_tells_how_the_scores_were_computed(tmp_path):
    """An automatic k, a sampled train split, the phase times in the order they ran (summary.json
    sorts its keys), and an exact score without a standard error."""
    run = make_run(tmp_path / "run")
    summary = json.loads((run / "summary.json").read_text())
    summary["splits"]["train"]["log_likelihood"] = {"estimate": -16.0, "stderr": 0.0, "k": None,
                                                    "exact": True}
    summary["evaluation"] = {"chosen": "auto", "k": 100, "budget_seconds": 1.5,
                             "training_seconds": 10.0, "train_rows": 2000, "train_rows_of": 36000}
    summary["timings"] = {"data": 0.3, "training": 10.0, "evaluation": 1.5, "diagnostics": 0.5,
                          "report": 3.0}
    write_json(run / "summary.json", summary)
    page = report.write_report(run).read_text()
    assert "k was chosen to fit about 1.5 s of scoring after 10.0 s of training" in page
    assert "the train row scores a seeded sample of 2000 of 36000 rows" in page
    assert "time taken: data 0.3 s, training 10.0 s, evaluation 1.5 s, diagnostics 0.5 s, report " \
           "3.0 s" in page
    assert "-16.000</td>" in page and "-16.000 &plusmn;" not in page  # exact: no ± SE


def test_a_run_in_a_notebook_shows_its_scores_and_main_figures_from_its_files(tmp_path):
    """render_summary (Run._repr_html_): a fragment of the report's own pieces, escaped, with
    the figures of SUMMARY_FIGURES alone, at SUMMARY_SCALE of their pixels."""
    run = make_run(tmp_path / "odd <run> & co")
    (run / "report.html").write_text("the whole report")
    text = report.render_summary(run)
    check_self_contained(text)
    assert text.startswith('<div class="elbokit-run">') and text.endswith("</div>")
    for whole_page in ("<html", "<style", "<nav", "<h2", "<body"):  # a notebook styles its outputs
        assert whole_page not in text
    assert "<code>odd &lt;run&gt; &amp; co</code>" in text and "<run>" not in text
    assert "VAE (latent gaussian:3" in text and "<code>report.html</code>" in text
    assert "Warning:</strong> posterior collapse: all 3 &lt;inactive&gt;" in text  # escaped too
    # The summary table as the report has it (its explanation left to the report).
    assert "<td>test</td>" in text and "-18.093" in text and "-16.993 &plusmn; 0.004" in text
    assert "3 epochs trained" in text and "ELBO = reconstruction &minus; KL" not in text
    # The figures: those of SUMMARY_FIGURES that exist, in that order, byte for byte, scaled.
    images = re.findall(r'<img src="data:image/png;base64,([^"]+)" alt="[^"]+" width="(\d+)" '
                        r'height="(\d+)"', text)
    shown = [n for n in report.SUMMARY_FIGURES if n in FIGURE_NAMES]
    assert shown == ["training_curves.png", "samples.png"] and len(images) == text.count("<img")
    for (data, width, height), name in zip(images, shown, strict=True):
        png = (run / "figures" / name).read_bytes()
        assert base64.b64decode(data) == png
        pixels = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
        assert (int(width), int(height)) == tuple(round(p * report.SUMMARY_SCALE) for p in pixels)
    # No summary yet, no figures: says so; a directory that is no run: one line, no exception.
    fresh = report.render_summary(make_run(tmp_path / "fresh", figures=[], summary=False))
    assert "No evaluation yet" in fresh and "No figures yet" in fresh and "<img" not in fresh
    assert "Warning" not in fresh
    (tmp_path / "plain").mkdir()
    assert report.render_summary(tmp_path / "plain") == (
        '<div class="elbokit-run"><p class="missing">'
        f"{tmp_path / 'plain'}: not an elbokit run (no config.json)</p></div>")
