"""Helpers shared by the fuzz and corruption suites: call ``diffctl`` in this process, read
its outcome, build a tiny finished run, list a directory tree.

Not a test module (no ``test_`` prefix); the suites import it from the tests folder.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from diffctl_cli.app import main

#: A two-moons run that trains, samples and evaluates in well under a second: 540 training
#: points in batches of 512 (2 steps per epoch), a 2,258-parameter MLP, 2 epochs with a
#: checkpoint each, every step logged, 50 samples in 4 steps scored by MMD (plus test-loss),
#: no floors.
TINY = ("dataset.n=600", "denoiser.name=mlp", "denoiser.hidden=16", "train.epochs=2",
        "train.batch_size=512", "train.checkpoint_every=1", "train.log_every=1",
        "sample.num_samples=50", "sample.num_steps=4", "eval.metrics=[mmd-rbf, test-loss]",
        "eval.floor_draws=0")


def tiny_sets(*extra: str) -> list[str]:
    """``--set`` arguments of the tiny run, then ``extra`` overrides."""
    return [arg for item in (*TINY, *extra) for arg in ("--set", item)]


@dataclass
class Outcome:
    """What ``diffctl ARGS`` did: exit code and the text on stdout and stderr."""

    code: int
    out: str
    err: str

    @property
    def errors(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.startswith("error:")]

    @property
    def warnings(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.startswith("warning:")]

    def show(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


def invoke(*argv: str | os.PathLike) -> Outcome:
    """Run ``diffctl ARGV`` through :func:`diffctl_cli.app.main` in this process.

    Every outcome of ``main`` is a ``SystemExit``; anything else escaping it is what a user
    would see as a traceback, so it propagates and fails the calling test. The CLI's warning
    handler binds the ``sys.stderr`` of its first call; it is removed first so that each call
    attaches it to the stream captured here.
    """
    import torch

    logger = logging.getLogger("diffctl")
    for handler in [h for h in logger.handlers if getattr(h, "_diffctl_cli", False)]:
        logger.removeHandler(handler)
    threads = torch.get_num_threads()  # an in-process 'eval' sets its workers' thread count
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in argv])
        except SystemExit as stop:
            code = stop.code
        else:  # pragma: no cover - main always exits
            raise AssertionError("diffctl main() returned instead of exiting")
        finally:
            torch.set_num_threads(threads)
    return Outcome(code if isinstance(code, int) else (0 if code is None else 1),
                   out.getvalue(), err.getvalue())


def assert_clean_error(result: Outcome, codes: tuple[int, ...] = (2,),
                       *fragments: str) -> str:
    """A refusal as the CLI promises it: an exit code in ``codes``, exactly one ``error:``
    line (the last thing on stderr), no traceback, and each of ``fragments`` in that line.
    Returns the line."""
    assert result.code in codes, result.show()
    assert "Traceback" not in result.err + result.out, result.show()
    assert len(result.errors) == 1, result.show()
    line = result.errors[0]
    assert result.err.rstrip().splitlines()[-1] == line, result.show()
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}\n{result.show()}"
    return line


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with its size and modification time (ns): a snapshot to
    prove that a rejected command wrote, removed and changed nothing."""
    found = {}
    for folder, dirs, names in os.walk(root):
        for name in [*dirs, *names]:
            path = Path(folder, name)
            stat = path.lstat()
            found[str(path.relative_to(root))] = (stat.st_size if path.is_file() else -1,
                                                  stat.st_mtime_ns if path.is_file() else 0)
    return found


def build_tiny_run(path: Path, *extra: str) -> Path:
    """A finished tiny run at ``path`` (trained, sampled, evaluated; no plots)."""
    result = invoke("run", "--out", path, "--no-plots", *tiny_sets(*extra))
    assert result.code == 0, result.show()
    return path


def copy_run(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, symlinks=True)
    return target
