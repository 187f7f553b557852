"""``python -m build`` makes an sdist and a wheel, and the wheel works installed outside the
source tree: ``elbokit --help``, a one-epoch ``fit`` on the bundled digits and ``classify``
on the bundled SMS spam corpus, with every elbokit module and every file they open coming
from the fresh environment, none from this checkout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import tarfile
import textwrap
import zipfile
from email import message_from_string
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "elbokit"

# Installed into the fresh environment as sitecustomize.py, so it runs first in every process
# that environment's python starts, the `elbokit` script included: it records every file
# opened inside the source tree (an audit hook sees builtin open, the import system's
# io.open_code, gzip and importlib.resources alike), leaving out the test environment whose
# packages are borrowed (`make test` keeps it in the checkout's .venv/), and, at exit, where
# each elbokit module came from and the module search path.
RECORDER = textwrap.dedent("""\
    import atexit, json, os, sys

    _SOURCE, _DEPENDENCIES = os.environ["ELBOKIT_SOURCE_TREE"], os.environ["ELBOKIT_TEST_ENV"]
    _opened = []

    def _within(path, folder):
        return path == folder or path.startswith(folder + os.sep)

    def _hook(event, args):
        if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            path = os.path.realpath(os.fsdecode(args[0]))
            if _within(path, _SOURCE) and not _within(path, _DEPENDENCIES):
                _opened.append(path)

    sys.addaudithook(_hook)

    @atexit.register
    def _report():
        modules = {name: getattr(module, "__file__", None) for name, module in list(sys.modules.items())
                   if name == "elbokit" or name.startswith("elbokit.")}
        line = json.dumps({"argv": sys.argv, "prefix": sys.prefix, "path": sys.path,
                           "modules": modules, "opened": list(_opened)})
        with open(os.environ["ELBOKIT_IMPORT_REPORT"], "a") as f:
            f.write(line + "\\n")
""")


def package_files() -> set[str]:
    """What the wheel must hold of the package: its modules, the py.typed marker and the data."""
    files = {p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}
    files |= {PACKAGE / "py.typed", *(PACKAGE / "data" / "sms_spam").iterdir()}
    return {p.relative_to(ROOT).as_posix() for p in files}


DEPENDENCIES = Path(sys.prefix).resolve()  # the test environment (under ROOT for `make test`)


def inside(path: str | os.PathLike, folder: Path) -> bool:
    return Path(os.path.realpath(path)).is_relative_to(folder.resolve())


def from_source(path: str | os.PathLike) -> bool:
    """Inside the checkout but not inside the test environment whose packages are borrowed."""
    return inside(path, ROOT) and not inside(path, DEPENDENCIES)


def test_the_wheel_installs_into_a_fresh_environment_and_runs_from_there(tmp_path):
    """One test, one build, one environment (measured: 20-22 s on the 2-core Xeon, with other
    work running; about 24 s of CPU, most of it the three commands importing torch and
    scikit-learn).

    Why the fresh environment borrows the test environment's packages: the wheel goes into a
    new virtual environment (``--no-deps --no-index``), outside the source tree, and its
    dependencies (the pinned CPU torch 2.13.0, numpy, scikit-learn, ...) are reached through
    a ``.pth`` file that lists the test environment's site-packages. Installing them afresh
    would copy about 1 GB (torch alone is 750 MB) on every run and, for anything not on local
    disk, need the network, which the tests never use. A folder named in a ``.pth`` file is
    appended to ``sys.path`` as it is: the ``.pth`` files inside it, among them the editable
    install's hook that maps ``elbokit`` to this checkout, are not processed, and the fresh
    site-packages comes first anyway. That the source tree stays out is asserted, not
    assumed: every elbokit module of every command, and every file any of them opened, must
    lie in the fresh environment.
    """
    assert not inside(tmp_path, ROOT), "the fresh environment must lie outside the source tree"

    # -- build: the sdist, then the wheel from the sdist (what `python -m build` does) ------------
    dist = tmp_path / "dist"
    built = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist),
                            str(ROOT)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    assert "Building wheel from sdist" in built.stdout + built.stderr  # the sdist suffices
    (sdist,), (wheel,) = dist.glob("elbokit-*.tar.gz"), dist.glob("elbokit-*.whl")
    assert wheel.name.endswith("-py3-none-any.whl")  # pure Python: one wheel for every platform
    wanted = package_files()

    top = sdist.name.removesuffix(".tar.gz")
    with tarfile.open(sdist) as tar:
        in_sdist = {name.removeprefix(top + "/") for name in tar.getnames()}
    # What building from the sdist needs (the wheel above was built from it): the build
    # configuration, the long description, the licence, the package and its data.
    assert {"pyproject.toml", "README.md", "LICENSE", "PKG-INFO"} <= in_sdist
    assert wanted <= in_sdist, sorted(wanted - in_sdist)
    assert not any(name.startswith(("tests/", "benchmarks/", "docs/", "runs/")) for name in in_sdist)

    with zipfile.ZipFile(wheel) as whl:
        in_wheel = set(whl.namelist())
        info = next(n.split("/")[0] for n in in_wheel if n.endswith(".dist-info/METADATA"))
        metadata = message_from_string(whl.read(f"{info}/METADATA").decode())
        scripts = whl.read(f"{info}/entry_points.txt").decode()
    package = {n for n in in_wheel if not n.startswith(info + "/")}
    assert package == wanted, (sorted(package - wanted), sorted(wanted - package))  # no tests/, no extras
    assert f"{info}/licenses/LICENSE" in in_wheel
    assert metadata["Name"] == "elbokit" and metadata["License-Expression"] == "MIT"
    assert metadata["Description-Content-Type"] == "text/markdown"
    assert metadata.get_payload().strip() == (ROOT / "README.md").read_text().strip()
    assert any(req.replace(" ", "").startswith("torch<2.14") for req in metadata.get_all("Requires-Dist"))
    assert "elbokit = elbokit.cli:main" in scripts

    # -- a fresh environment outside the source tree ------------------------------------------
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python, script = venv / "bin" / "python", venv / "bin" / "elbokit"
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                                "--quiet", "--no-deps", "--no-index", "--disable-pip-version-check",
                                str(wheel)], capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr
    fresh_packages = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    assert (fresh_packages / "elbokit" / "py.typed").is_file()
    assert (fresh_packages / "elbokit" / "data" / "sms_spam" / "SMSSpamCollection.gz").is_file()
    ours = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    (fresh_packages / "test-environment-packages.pth").write_text("".join(f"{p}\n" for p in ours))
    (fresh_packages / "sitecustomize.py").write_text(RECORDER)

    work, report = tmp_path / "work", tmp_path / "imports.jsonl"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env |= {"ELBOKIT_SOURCE_TREE": str(ROOT.resolve()), "ELBOKIT_TEST_ENV": str(DEPENDENCIES),
            "ELBOKIT_IMPORT_REPORT": str(report),
            "OMP_NUM_THREADS": "1"}

    def elbokit(*argv: str) -> subprocess.CompletedProcess:
        done = subprocess.run([str(script), *argv], cwd=work, env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, (argv, done.stderr[-3000:])
        return done

    # -- the three commands ------------------------------------------------------------------------
    helped = elbokit("--help")
    assert "usage: elbokit" in helped.stdout
    assert all(command in helped.stdout for command in ("fit", "classify", "sample", "evaluate"))

    fitted = elbokit("fit", "--data", "digits", "--epochs", "1", "--hidden", "32", "--eval-k", "20",
                     "--no-report", "--seed", "0", "--out", "run")
    assert "run directory: run" in fitted.stdout
    summary = json.loads((work / "run" / "summary.json").read_text())
    assert summary["epochs_trained"] == 1 and summary["splits"]["train"]["n_examples"] == 1294
    assert (work / "run" / "model.safetensors").stat().st_size > 0
    elbo = [json.loads(line)["train"]["elbo"] for line in (work / "run" / "metrics.jsonl").open()]
    assert len(elbo) == 1 and -1e3 < elbo[0] < 0  # nats per 64-pixel digit: finite, a density's

    # The bundled corpus (package data), read from the wheel: naive Bayes and one mixture
    # component per class on 300 words are enough to beat always saying "ham" (87%).
    classified = elbokit("classify", "--data", "sms-spam", "--method", "generative", "--components", "1",
                         "--vocabulary", "300", "--json", "-")
    scores = json.loads(classified.stdout)
    assert set(scores) == {"naive-bayes", "mixture-per-class"}
    for method in scores.values():
        assert method["n_examples"] == round(0.2 * 5574) and method["positive"] == "spam"
        assert method["accuracy"] > 0.95 and method["roc_auc"] > 0.95

    # -- and everything came from the fresh environment -------------------------------------------
    runs = [json.loads(line) for line in report.read_text().splitlines()]
    assert [r["argv"][1:2] for r in runs] == [["--help"], ["fit"], ["classify"]]
    for run in runs:
        assert inside(run["prefix"], venv) and inside(run["argv"][0], venv)
        assert not any(from_source(p) for p in run["path"] if p), run["path"]
        assert inside(run["modules"]["elbokit"], fresh_packages), run["modules"]["elbokit"]
        elsewhere = {name: f for name, f in run["modules"].items() if f and not inside(f, fresh_packages)}
        assert not elsewhere, elsewhere
        assert run["opened"] == [], run["opened"][:5]
    # The commands did load what they run: the CLI's command module and the data readers.
    assert "elbokit.cli.fit" in runs[1]["modules"] and "elbokit.training" in runs[1]["modules"]
    assert "elbokit.data.text" in runs[2]["modules"]

    # The recorder does see the source tree when it is used: the same python with the
    # checkout put first on its path imports elbokit from there, and says so.
    report.unlink()
    control = subprocess.run([str(python), "-c", "import elbokit.data.text"], cwd=work, timeout=120,
                             env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    assert control.returncode == 0, control.stderr
    (seen,) = [json.loads(line) for line in report.read_text().splitlines()]
    assert inside(seen["modules"]["elbokit"], ROOT)
    assert any(f.endswith(os.path.join("elbokit", "data", "text.py")) for f in seen["opened"]), seen["opened"]

