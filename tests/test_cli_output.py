"""What the commands print: ``--json -`` leaves stdout holding the JSON alone (the table goes
to stderr), and every option's ``--help`` text says what it does and its default."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pytest

from elbokit.cli import build_parser, main


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def labelled(tmp_path: Path) -> Path:
    """60 rows of 6 binary features, two classes of 30."""
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 30)
    x = (rng.random((60, 6)) < np.where(y[:, None] == 1, 0.7, 0.2)).astype(np.float64)
    np.savez(tmp_path / "labelled.npz", x=x, y=y)
    return tmp_path / "labelled.npz"


def test_json_to_stdout_leaves_stdout_holding_the_json_alone(capsys, tmp_path, labelled):
    fit = tmp_path / "fit"
    code, _, err = run(capsys, "fit", "--data", labelled, "--epochs", "1", "--hidden", "8",
                       "--latent-dim", "2", "--eval-k", "10", "--quiet", "--no-report",
                       "--out", fit)
    assert code == 0, err
    classified = tmp_path / "classified"
    np.save(tmp_path / "rows.npy", np.load(labelled)["x"][:3])
    commands = {
        "evaluate": ["evaluate", fit, "--k", "2", "--iwae-k", "2"],
        "classify": ["classify", "--data", labelled, "--method", "discriminative", "--out",
                     classified],
        "predict": ["predict", classified, "--file", tmp_path / "rows.npy"],
    }
    tables = {"evaluate": "reconstruction", "classify": "ROC AUC", "predict": "p(1|x)"}
    for name, argv in commands.items():
        code, out, err = run(capsys, *argv, "--json", "-")
        assert code == 0, err
        assert isinstance(json.loads(out), dict), name  # the whole of stdout
        assert tables[name] in err, name  # the table, on stderr
        # Without --json -, the table is on stdout as before.
        if name != "classify":
            code, out, _ = run(capsys, *argv)
            assert code == 0 and tables[name] in out, name


def _options():
    """``(command, action)`` for every option and positional argument of every command."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for command, parser in sub.choices.items():
        for action in parser._actions:
            if not isinstance(action, argparse._HelpAction):
                yield command, action


def _states_default(text: str, default: object) -> bool:
    """Whether help ``text`` gives ``default`` as "(default X", "(default: X", "(X)", "(X;" or
    "(X,", or through argparse's %(default)s; numbers compare as numbers (1e-3 is 0.001)."""
    if "%(default)s" in text:
        return True
    wanted = (",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in default)
              if isinstance(default, tuple | list) else str(default))
    for found in re.findall(r"\((?:default:? )?([^);,\s]+(?:,[0-9.e+-]+)*)[);,]", text):
        if found == wanted:
            return True
        if isinstance(default, int | float):
            try:
                if float(found) == default:
                    return True
            except ValueError:
                pass
    return False


def test_every_option_has_help_text_and_shows_its_default():
    missing, no_default = [], []
    for command, action in _options():
        name = f"{command} {(action.option_strings or [action.dest])[-1]}"
        if not (action.help or "").strip():
            missing.append(name)
        elif action.default not in (None, False) and not _states_default(action.help, action.default):
            no_default.append(f"{name} (default {action.default!r})")
    assert missing == [], f"options without help: {missing}"
    assert no_default == [], f"options whose help does not show the default: {no_default}"


def test_defaults_show_in_the_rendered_help(capsys):
    code, out, _ = run(capsys, "fit", "--help")
    assert code == 0
    for text in ("(default 128)", "else 1e-3)", "(default 0)", "(default float32)",
                 "(default relu)"):
        assert text in " ".join(out.split()), text
