"""``elbokit`` commands in child processes forked from the test process (POSIX).

Why: a fresh interpreter spends several seconds importing torch, scikit-learn and
``torch._dynamo`` (every torch optimizer imports it) before a command's first line, and
the tests that start dozens of training processes -- SIGKILL and Ctrl-C at random points,
progress bars on a terminal -- spent most of their time there. A forked child is a real
process all the same: its own pid, files and exit status, and SIGKILL or SIGINT reach it
as they reach ``elbokit`` in a shell; it starts with the modules already imported. That the
installed command starts in a fresh interpreter is tested on its own
(``tests/test_cli.py``, ``tests/test_layers.py``).

A child computes on one thread (``torch.set_num_threads(1)``): GNU OpenMP's thread pool does
not survive a fork, and one thread keeps a child off it. Runs compared bit for bit are all
started here, so they see the same thread count.
"""

from __future__ import annotations

import io
import os
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch


class Forked:
    """A forked child running ``code`` (Python source) with ``sys.argv[1:] = argv``, in
    ``cwd`` with environment ``env``; stdin is /dev/null, stdout and stderr are captured in
    files unless ``stderr`` is a file descriptor (e.g. a pseudo-terminal). The subset of
    :class:`subprocess.Popen` the tests use: ``pid``, ``returncode``, ``poll``, ``wait``,
    ``send_signal``, ``kill``, ``communicate`` (text)."""

    def __init__(self, code: str, argv: list[str], cwd: Path, env: dict[str, str] | None = None,
                 stderr: int | None = None) -> None:
        self.returncode: int | None = None
        self._out = tempfile.TemporaryFile()
        self._err = tempfile.TemporaryFile() if stderr is None else None
        sys.stdout.flush()
        sys.stderr.flush()
        self.pid = os.fork()
        if self.pid == 0:  # the child: never returns
            _child(code, argv, cwd, env, self._out.fileno(),
                   stderr if stderr is not None else self._err.fileno())

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(f"process {self.pid} still running after {timeout} s")
            time.sleep(0.002)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)
        os.waitpid(self.pid, 0)
        self.returncode = -signal.SIGKILL

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        self.wait(timeout)
        return _read(self._out), (_read(self._err) if self._err is not None else "")


def elbokit(argv: list[str], cwd: Path, env: dict[str, str] | None = None,
            stderr: int | None = None) -> Forked:
    """``python -m elbokit ARGV``, forked."""
    return Forked("import runpy\nrunpy.run_module('elbokit', run_name='__main__')", argv, cwd,
                  env, stderr)


def _read(file) -> str:
    file.seek(0)
    return file.read().decode("utf-8", "replace")


def _child(code: str, argv: list[str], cwd: Path, env: dict[str, str] | None, out: int,
           err: int) -> None:
    status = 1
    try:
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(err, 2)
        # New text streams over fds 0-2: the test runner's capture objects are not them.
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=True)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), line_buffering=True)
        # SIGINT as in a shell (KeyboardInterrupt), whatever the test runner set.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        torch.set_num_threads(1)
        os.chdir(cwd)
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        sys.argv = ["elbokit", *map(str, argv)]
        try:
            exec(compile(code, "<forked>", "exec"), {"__name__": "__forked__"})
            status = 0
        except SystemExit as done:
            status = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
            if isinstance(done.code, str):
                print(done.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 -- reported like an interpreter would, then exit
        traceback.print_exc()
        status = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(status)
