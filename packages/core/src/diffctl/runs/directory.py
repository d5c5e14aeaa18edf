"""The run directory: every file name and format of a run lives here (docs/design.md, "Runs").

::

    config.yaml            the resolved config (written atomically); repeats the run
    checkpoints/           epoch-NNNN/ folders (diffctl.training.checkpoint), last, best;
                           partial/step-NNNNNNNN/: the newest mid-epoch checkpoint
                           (train.checkpoint_every_steps), for resuming only
    train.jsonl            loss and lr every train.log_every steps
    metrics.jsonl          one line per checkpoint evaluation during training
    losses.json            (step, loss) pairs of the finished training
    metrics.json           the final report: training summary, metrics with floors
    samples.npy, real.npy  the final evaluation's generated and real samples
    trajectory.npz         states along the sampling path of the first samples
    samples/               diffctl sample: one .npy (and plots) per checkpoint, sampler, steps;
                           comparison-*.json: sampler comparisons (sample --comparison)
    eval/<id>/             diffctl eval: one folder per evaluation, never overwritten; its
                           samples/<checkpoint>.npy (a few samples of each checkpoint) and
                           real.npy, and the pictures the CLI draws from them
    report.html            diffctl report: the run on one self-contained page
    *.png                  plots drawn by the CLI

Writers replace files atomically (temporary file, then rename), so a killed process leaves the
old version or the new one, never half of one; JSON-lines files are appended one whole line at
a time. Readers turn an unreadable file into one :class:`~diffctl.errors.UsageError` naming it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from diffctl.errors import StorageError, UsageError

log = logging.getLogger("diffctl")

CONFIG = "config.yaml"
CHECKPOINTS = "checkpoints"
TRAIN_LOG = "train.jsonl"
METRICS_LOG = "metrics.jsonl"
LOSSES = "losses.json"
REPORT = "metrics.json"
SAMPLES = "samples.npy"
REAL = "real.npy"
TRAJECTORY = "trajectory.npz"
SAMPLES_DIR = "samples"
EVAL_DIR = "eval"
EVAL_ROWS = "checkpoints.jsonl"
EVAL_FLOORS = "floors.json"
EVAL_SETTINGS = "settings.json"
EVAL_SAMPLES = "samples"  # eval/<id>/samples/<checkpoint>.npy
EVAL_PLOT = "metric_vs_epoch.png"
EVAL_STRIP = "strip.png"  # the kept samples of every checkpoint, across epochs
REPORT_HTML = "report.html"


def write_atomic(path: Path, data: str | bytes) -> None:
    """Replace ``path`` with ``data``: written to a hidden temporary file, then renamed. A
    failed write (disk full) leaves the old file and raises one :class:`StorageError`."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StorageError(f"cannot write {path} ({exc.strerror or exc}); its previous "
                           "version, if any, is kept") from None


def save_array(path: Path, array: Any) -> Path:
    """Write a numpy array as ``.npy`` atomically (creating the folder)."""
    import io

    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array))
    write_atomic(path, buffer.getvalue())
    return path


def read_text(path: Path, what: str = "file") -> str:
    """A UTF-8 text file, or one clear error naming it."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{what} not found: {path}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{what} {path} is not UTF-8 text (damaged?)") from None
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def read_json(path: Path, what: str = "file") -> Any:
    try:
        return json.loads(read_text(path, what))
    except json.JSONDecodeError as exc:
        raise UsageError(f"{what} {path} is not valid JSON (line {exc.lineno}): damaged?") \
            from None


#: Keys every log record has: counters, never anything but non-negative integers.
_COUNTERS = ("step", "epoch")


def read_jsonl(path: Path, *, announce_torn: bool = False) -> list[dict[str, Any]]:
    """The records of a JSON-lines file; a torn last line (a killed writer) is skipped (with
    a warning when ``announce_torn``: a reader that reports from the log says what it left
    out), a bad line elsewhere or a record whose step or epoch is not a count is an error.
    A missing file has no records."""
    if not path.exists():
        return []
    lines = read_text(path, "log").splitlines()
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:  # torn by a kill: the record was never complete
                if announce_torn:
                    log.warning("%s: the last line is cut off (a killed run?); left out", path)
                continue
            raise UsageError(f"{path}: line {i + 1} is not valid JSON (damaged?)") from None
        if not isinstance(record, dict):
            raise UsageError(f"{path}: line {i + 1} is not a JSON object (damaged?)")
        for key in _COUNTERS:
            value = record.get(key, 0)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise UsageError(f"{path}: line {i + 1} has {key} {value!r} (damaged?)")
        records.append(record)
    return records


def settings_key(settings: dict[str, Any]) -> str:
    """A short stable hash of a settings dict (names eval folders)."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def default_run_dir(name: str, root: Path = Path("runs")) -> Path:
    """``runs/<time>-<name>``."""
    return root / f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{name}"


def check_output_dir(path: Path) -> None:
    """A run may be written at ``path``: absent (under a writable directory) or an existing
    directory without a run in it. One line otherwise, before anything is written."""
    if str(path).strip() == "":
        raise UsageError("--out is empty; name a directory for the run")
    if path.exists() or path.is_symlink():
        if not path.is_dir():
            raise UsageError(f"--out {path} exists and is not a directory")
        if (path / CONFIG).is_file():
            raise UsageError(f"run directory {path} already holds a run; use --resume or "
                             "another --out")
        _probe_writable(path, path)
        return
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"--out {path}: {parent} is a file, not a directory")
    _probe_writable(parent, path)


def _probe_writable(folder: Path, path: Path) -> None:
    """Create and remove a temporary folder in ``folder``: permission bits do not tell (root,
    /proc, read-only mounts), trying does."""
    import shutil
    import tempfile

    try:
        probe = tempfile.mkdtemp(prefix=".diffctl-probe-", dir=folder)
    except OSError as exc:
        raise UsageError(f"--out {path}: cannot create it under {folder} "
                         f"({exc.strerror or exc})") from None
    shutil.rmtree(probe, ignore_errors=True)


def _report_problem(report: Any) -> str | None:
    """What makes ``report`` not a final report as :meth:`Run.finalize` writes it."""
    if not isinstance(report, dict):
        return "not a JSON object"
    for key in ("train", "eval"):
        if key not in report:
            return f"'{key}' is missing"
        if not isinstance(report[key], dict):
            return f"'{key}' is not an object"
    ev = report["eval"]
    sections = {"eval.metrics": ev.get("metrics", {}), "eval.floors": ev.get("floors", {})}
    reconstruction = ev.get("reconstruction", {})
    if not isinstance(reconstruction, dict):
        return "'eval.reconstruction' is not an object"
    sections["eval.reconstruction.metrics"] = reconstruction.get("metrics", {})
    for where, section in sections.items():
        if not isinstance(section, dict):
            return f"'{where}' is not an object"
    for name, value in {**sections["eval.metrics"],
                        **sections["eval.reconstruction.metrics"]}.items():
        if not isinstance(value, int | float) or isinstance(value, bool):
            return f"metric '{name}' is {value!r}, not a number"
    return floors_problem(sections["eval.floors"])


def floors_problem(floors: Any) -> str | None:
    """What makes ``floors`` not a ``{metric: {mean, p95, ...}}`` mapping of numbers."""
    if not isinstance(floors, dict):
        return "the floors are not an object"
    for name, floor in floors.items():
        if not isinstance(floor, dict):
            return f"the floor of '{name}' is not an object"
        for key in ("mean", "p95"):
            value = floor.get(key)
            if value is not None and (not isinstance(value, int | float) or
                                      isinstance(value, bool)):
                return f"the floor {key} of '{name}' is {value!r}, not a number"
    return None


class RunDirectory:
    """The paths of one run and the readers and writers of its files."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.checkpoints = self.path / CHECKPOINTS

    def __repr__(self) -> str:
        return f"RunDirectory({str(self.path)!r})"

    def file(self, name: str) -> Path:
        return self.path / name

    def exists(self) -> bool:
        """Whether a run lives here (its config.yaml exists)."""
        return (self.path / CONFIG).is_file()

    # -- config ------------------------------------------------------------------------------
    def read_config_text(self) -> str:
        if not self.exists():
            raise UsageError(f"not a run directory (no {CONFIG}): {self.path}")
        return read_text(self.path / CONFIG, "run config")

    def write_config(self, text: str) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path / CONFIG, text)

    # -- logs ------------------------------------------------------------------------------
    def append_line(self, name: str, record: dict[str, Any]) -> None:
        """Append one JSON line (a killed run leaves every earlier line intact). A torn last
        line left by an earlier kill is completed with a newline first, so the new record
        starts on a line of its own."""
        path = self.path / name
        try:
            with open(path, "ab+") as fh:
                if fh.tell() > 0:
                    fh.seek(-1, os.SEEK_END)
                    if fh.read(1) != b"\n":
                        fh.write(b"\n")
                fh.write((json.dumps(record) + "\n").encode())
        except OSError as exc:
            raise StorageError(f"cannot append to {path} ({exc.strerror or exc}); its earlier "
                               "lines are kept") from None

    def history(self) -> list[dict[str, Any]]:
        """The per-checkpoint records written during training."""
        return read_jsonl(self.path / METRICS_LOG)

    def truncate_logs(self, step: int) -> None:
        """Drop log lines past ``step`` and any torn line: a resumed run repeats the work
        after its checkpoint and logs it again (atomic rewrite)."""
        for name in (METRICS_LOG, TRAIN_LOG):
            path = self.path / name
            if not path.exists():
                continue
            kept = [json.dumps(r) + "\n" for r in read_jsonl(path) if r.get("step", 0) <= step]
            write_atomic(path, "".join(kept))

    def sort_log(self, name: str) -> None:
        """Order a log's records by step (after lines were written again out of order)."""
        path = self.path / name
        records = read_jsonl(path)
        ordered = sorted(records, key=lambda r: r.get("step", 0))
        if ordered != records:
            write_atomic(path, "".join(json.dumps(r) + "\n" for r in ordered))

    # -- reports ---------------------------------------------------------------------------
    def write_json(self, name: str, payload: Any) -> None:
        write_atomic(self.path / name, json.dumps(payload, indent=1))

    def report(self) -> dict[str, Any] | None:
        """The final report (metrics.json), None before the run finished; a file that is not
        a report (another shape, a value that is not a number) is an error naming it."""
        path = self.path / REPORT
        if not path.exists():
            return None
        report = read_json(path, "run report")
        problem = _report_problem(report)
        if problem:
            raise UsageError(f"run report {path} is damaged: {problem}")
        return report

    # -- samples and evaluations -----------------------------------------------------------
    def sample_path(self, checkpoint: str, sampler: str, steps: int, num_samples: int,
                    seed: int, suffix: str = "") -> Path:
        """``samples/<checkpoint>-<sampler>-<steps>steps-<n>-seed<seed><suffix>.npy``: what
        changes the samples is in the name, so two sample commands never overwrite each
        other's results unless they would write the same numbers."""
        folder = self.path / SAMPLES_DIR
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{checkpoint}-{sampler}-{steps}steps-{num_samples}-seed{seed}" \
                        f"{suffix}.npy"

    def comparison_path(self, checkpoint: str, num_samples: int, seed: int,
                        specs: list[Any]) -> Path:
        """``samples/comparison-<checkpoint>-<n>-seed<seed>-<hash of the samplers>.json``: a
        sampler comparison's summary (the CLI draws the ``.png`` of the same stem)."""
        folder = self.path / SAMPLES_DIR
        folder.mkdir(parents=True, exist_ok=True)
        key = settings_key({"samplers": [repr(s) for s in specs]})
        return folder / f"comparison-{checkpoint}-{num_samples}-seed{seed}-{key}.json"

    def new_eval_dir(self, settings: dict[str, Any]) -> Path:
        """A fresh ``eval/<time>-<settings hash>/`` folder; never an existing one."""
        base = self.path / EVAL_DIR
        base.mkdir(parents=True, exist_ok=True)
        stem = f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{settings_key(settings)}"
        for i in range(1000):
            path = base / (stem if i == 0 else f"{stem}-{i}")
            try:
                path.mkdir()
                return path
            except FileExistsError:
                continue
        raise UsageError(f"cannot create a new evaluation folder under {base}")

    def eval_dirs(self) -> list[Path]:
        """Finished evaluation folders (with their rows), oldest first."""
        base = self.path / EVAL_DIR
        if not base.is_dir():
            return []
        return sorted(p for p in base.iterdir() if (p / EVAL_ROWS).is_file())


def options_suffix(options: dict[str, Any]) -> str:
    """The part of a sample file's name that records sampler options set for one draw:
    ``-eta=0-spacing=leading`` (sorted; characters other than letters, digits and ``._+=-``
    become ``_``), or ``-opts<settings_key of the options>`` when that would be longer than
    60 characters; empty for no options. Two draws that differ only in an option then never
    write the same file."""
    if not options:
        return ""
    parts = "".join(f"-{k}={v:g}" if isinstance(v, float) else f"-{k}={v}"
                    for k, v in sorted(options.items()))
    readable = re.sub(r"[^A-Za-z0-9._+=-]", "_", parts)
    if len(readable) <= 60:
        return readable
    return "-opts" + settings_key(options)


def eval_sample_path(folder: Path, checkpoint: str) -> Path:
    """``eval/<id>/samples/<checkpoint>.npy``: the samples kept of one evaluated checkpoint."""
    return folder / EVAL_SAMPLES / f"{checkpoint}.npy"


def eval_picture_path(folder: Path, checkpoint: str) -> Path:
    """``eval/<id>/<checkpoint>.png``: the picture of one checkpoint's kept samples."""
    return folder / f"{checkpoint}.png"


def kept_samples(folder: Path) -> dict[str, Path]:
    """The kept samples of an evaluation folder by checkpoint, in checkpoint order."""
    base = folder / EVAL_SAMPLES
    if not base.is_dir():
        return {}
    return {p.stem: p for p in sorted(base.glob("*.npy"))}
