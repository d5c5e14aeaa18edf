"""Damaged run directories: every file of a finished run x kinds of damage x the commands
that read runs (``sample``, ``eval``, ``run --resume``, ``compare``).

Each cell states its outcome (docs/design.md, "Runs"; issue 14):

* ``OK``: exit 0, no warning: the command does not read that file (a documented
  acceptance: ``sample`` never reads ``losses.json``) or the damage is of a kind the design
  repairs quietly (a missing ``last`` pointer means the newest folder);
* ``warn``: exit 0 with a ``warning:`` line naming what was skipped, and the result shows the
  fallback (``sample`` wrote the samples of ``epoch-0001``, not of the damaged checkpoint);
* ``error``: one ``error:`` line naming the damaged file, exit 1 or 2, nothing written;
* ``partial`` (``eval``): the damaged checkpoint is listed as failed with the reason, the
  others are evaluated, exit 1.

A change of behaviour fails its cell. Besides the matrix: disk full during a checkpoint or a
report, SIGINT during training, stale staging folders, and ``--resume`` refusing options
it would ignore.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_harness import (
    Outcome,
    assert_clean_error,
    build_tiny_run,
    copy_run,
    invoke,
    tiny_sets,
    tree,
)

from diffctl.training.checkpoint import read_state, resolve_checkpoint, verify_checkpoint

C1, C2 = "checkpoints/epoch-0001", "checkpoints/epoch-0002"


# -- the run every cell starts from ------------------------------------------------------------
@pytest.fixture(autouse=True)
def _fresh_registry():
    """Replaces the suite's per-test registry reset (conftest.py): these tests register
    nothing, and the ``runs`` fixture starts the module from a fresh registry."""
    yield


#: Scored by test-loss only: the matrix is about the files, and every command stays fast.
METRICS = "eval.metrics=[test-loss]"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A finished tiny run (2 epochs, a checkpoint each), the same run after one ``diffctl
    eval`` (its eval folder is damaged too), and a run of a wider model (weights of another
    shape)."""
    import diffctl

    diffctl.reset_registry()
    root = tmp_path_factory.mktemp("finished")
    run = build_tiny_run(root / "run", METRICS)
    evaluated = copy_run(run, root / "evaluated")
    done = invoke("eval", "--run", evaluated, "--num-samples", "50", "--steps", "4",
                  "--metric", "mmd-rbf", "--metric", "test-loss")  # rows and floors.json
    assert done.code == 0, done.show()
    wider = build_tiny_run(root / "wider", "denoiser.hidden=32", METRICS)
    assert resolve_checkpoint(run / "checkpoints", "best").name == "epoch-0002"
    return {"run": run, "evaluated": evaluated, "wider": wider}


# -- damages: bytes -> bytes (None deletes the file) -------------------------------------------
GARBAGE = b"\xff\xfe\x80 not text \xc3\x28\x00" * 8


def half(data: bytes) -> bytes:
    return data[:len(data) // 2]


def flip(data: bytes) -> bytes:
    """Invert 16 bytes in the middle: the size and any header stay as they were."""
    mid = len(data) // 2
    return data[:mid] + bytes(b ^ 0xFF for b in data[mid:mid + 16]) + data[mid + 16:]


def json_with(**fields) -> Callable[[bytes], bytes]:
    def damage(data: bytes) -> bytes:
        return json.dumps({**json.loads(data), **fields}).encode()
    return damage


def torn(data: bytes) -> bytes:
    """The last line cut off halfway, as a writer killed mid-line leaves it."""
    lines = data.splitlines(keepends=True)
    return b"".join(lines[:-1]) + lines[-1][:len(lines[-1]) // 2]


def bad_counter(data: bytes) -> bytes:
    """The first record's step replaced by text."""
    lines = data.splitlines(keepends=True)
    record = json.loads(lines[0])
    record["step"] = "abc"
    return json.dumps(record).encode() + b"\n" + b"".join(lines[1:])


def cut_before_sample(data: bytes) -> bytes:
    """Cut at the line that starts the sample section: valid YAML and a valid config, whose
    sample and eval settings are now the defaults."""
    return data[:data.index(b"\nsample:") + 1]


DAMAGES: dict[str, Callable[[bytes], bytes] | None] = {
    "truncate": half, "zero": lambda d: bytes(len(d)), "flip": flip, "delete": None,
    "garbage": lambda d: GARBAGE,
    "invalid-json": lambda d: b'{"step": 4, "epoch":', "list": lambda d: b"[]",
    "empty-object": lambda d: b"{}",
    "step-abc": json_with(step="abc"), "epoch-1e9": json_with(epoch=10**9),
    "losses-text": json_with(losses="abc"),
    "no-optimizer-entry": lambda d: json.dumps(
        {k: v for k, v in json.loads(d).items() if k != "optimizer"}).encode(),
    "escape": lambda d: b"../../other/checkpoints/epoch-0001\n",
    "missing-folder": lambda d: b"epoch-0099\n",
    "torn-line": torn, "bad-counter": bad_counter, "cut-at-line": cut_before_sample,
    "report-types": lambda d: b'{"eval": "abc", "train": []}',
    "metric-text": json_with(eval={"metrics": {"mmd-rbf": "low"}, "floors": {}}),
    "floor-text": lambda d: b'{"num_samples": 50, "floors": {"mmd-rbf": {"mean": "x"}}}',
}
#: Damages that put the same file of the wider run's newest checkpoint in its place.
WIDER = {"wider-model": "model.safetensors", "wider-ema": "ema.safetensors",
         "wider-optimizer": "optimizer.safetensors"}


# -- outcomes -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Expect:
    """One cell's outcome: ``kind`` (ok, warn, error, partial), its exit code, fragments
    the warning/error/failure line must contain, and the checkpoint(s) whose weights the
    command used (sample: the one it drew from; eval: those it evaluated)."""

    kind: str
    code: int = 0
    names: tuple[str, ...] = ()
    uses: tuple[str, ...] = ("epoch-0002",)


OK = Expect("ok")


def warn(*names: str, uses: str = "epoch-0002") -> Expect:
    return Expect("warn", 0, names, (uses,))


def error(code: int, *names: str) -> Expect:
    return Expect("error", code, names, ())


def partial(*names: str) -> Expect:
    return Expect("partial", 1, names, ("epoch-0001",))


#: sample, eval, resume, compare
COMMANDS = ("sample", "eval", "resume", "compare")


def same(outcome: Expect) -> tuple[Expect, ...]:
    return (outcome,) * 4


def damaged_checkpoint(file: str) -> tuple[Expect, ...]:
    """A damaged file of the newest checkpoint that sampling, evaluation and training read:
    sample falls back to epoch-0001, eval lists epoch-0002 as failed, resume continues from
    epoch-0001, compare does not read checkpoints."""
    return (warn("epoch-0002", file, uses="epoch-0001"), partial("epoch-0002", file),
            warn("epoch-0002", file), OK)


#: Only resume needs the optimizer state; the weights' own checksums still hold, so
#: sampling and evaluating from epoch-0002 is right (a documented acceptance).
OPTIMIZER = (OK, OK, warn("epoch-0002", "optimizer.safetensors"), OK)
#: sample/eval/resume refuse a config.yaml they cannot read; compare reads only reports and
#: logs (config.yaml marks a run directory, so only its absence matters there).
CONFIG = (*(error(2, "config.yaml"),) * 3, OK)
#: a damaged 'last' pointer: sample and resume use the newest intact folder and say so;
#: eval (all checkpoints) and compare do not read it.
LAST = (warn("checkpoints/last"), OK, warn("checkpoints/last"), OK)
#: a damaged 'best' pointer: 'sample --checkpoint best' and 'eval --checkpoints best'
#: refuse it (there is no fallback for a named checkpoint); resume and compare do not read it.
BEST = (error(2, "best"), error(2, "best"), OK, OK)
#: logs repaired by resume (lines up to the checkpoint written again, see resume_invariants)
TRAIN_LOG_REPAIRED = same(OK)
TRAIN_LOG_REFUSED = (OK, OK, error(2, "train.jsonl"), OK)
METRICS_LOG_REPAIRED = (OK, OK, warn("metrics.jsonl"), warn("metrics.jsonl"))
METRICS_LOG_REFUSED = (OK, OK, error(2, "metrics.jsonl"), error(2, "metrics.jsonl"))
#: metrics.json is the final report: only compare reads it (resume writes it again)
REPORT_REFUSED = (OK, OK, OK, error(2, "metrics.json"))
#: compare reads the newest eval folder's rows and floors; nothing else reads them
EVAL_ROWS_REFUSED = (OK, OK, OK, error(2, "checkpoints.jsonl"))
EVAL_FLOORS_REFUSED = (OK, OK, OK, error(2, "floors.json"))

GENERIC = ("truncate", "zero", "flip", "delete", "garbage")

MATRIX: dict[tuple[str, str], tuple[Expect, ...]] = {
    **{("config.yaml", d): CONFIG for d in ("truncate", "zero", "flip", "garbage")},
    ("config.yaml", "delete"): same(error(2, "config.yaml")),
    # cut at a line boundary: valid YAML with defaults where settings were; the checkpoint's
    # config fingerprint tells (resume refuses, sample and eval announce it)
    ("config.yaml", "cut-at-line"): (warn("config.yaml differs"), warn("config.yaml differs"),
                                     error(2, "config.yaml differs"), OK),
    **{(f"{C2}/model.safetensors", d): damaged_checkpoint("model.safetensors")
       for d in (*GENERIC, "wider-model")},
    **{(f"{C2}/ema.safetensors", d): damaged_checkpoint("ema.safetensors")
       for d in (*GENERIC, "wider-ema")},
    **{(f"{C2}/optimizer.safetensors", d): OPTIMIZER for d in (*GENERIC, "wider-optimizer")},
    **{(f"{C2}/state.json", d): damaged_checkpoint("state.json")
       for d in (*GENERIC, "invalid-json", "list", "empty-object", "step-abc", "epoch-1e9",
                 "losses-text")},
    # the optimizer's hyper-parameters lost: only resume needs them
    (f"{C2}/state.json", "no-optimizer-entry"): (OK, OK, warn("epoch-0002", "optimizer"), OK),
    # the epoch-0001 weights: only a sweep over all checkpoints reads them
    (f"{C1}/model.safetensors", "flip"): (OK, Expect("partial", 1, ("epoch-0001",),
                                                     ("epoch-0002",)), OK, OK),
    **{("checkpoints/last", d): LAST
       for d in ("truncate", "zero", "flip", "garbage", "escape", "missing-folder")},
    ("checkpoints/last", "delete"): same(OK),  # documented: no pointer = the newest folder
    **{("checkpoints/best", d): BEST for d in (*GENERIC, "escape", "missing-folder")},
    **{("train.jsonl", d): TRAIN_LOG_REPAIRED
       for d in ("truncate", "zero", "delete", "torn-line")},
    **{("train.jsonl", d): TRAIN_LOG_REFUSED for d in ("flip", "garbage", "bad-counter")},
    **{("metrics.jsonl", d): METRICS_LOG_REPAIRED for d in ("zero", "torn-line")},
    # half the file is exactly the first record: a shorter log, which nothing can tell from
    # a run with one evaluation until resume finds epoch-0002's record missing
    ("metrics.jsonl", "truncate"): (OK, OK, warn("metrics.jsonl"), OK),
    # no training log at all: resume evaluates both checkpoints again, compare reports the
    # final values without a history
    ("metrics.jsonl", "delete"): (OK, OK, warn("metrics.jsonl"), OK),
    **{("metrics.jsonl", d): METRICS_LOG_REFUSED for d in ("flip", "garbage", "bad-counter")},
    **{("metrics.json", d): REPORT_REFUSED
       for d in ("truncate", "zero", "flip", "garbage", "invalid-json", "list", "empty-object",
                 "report-types", "metric-text")},
    ("metrics.json", "delete"): same(OK),  # an unfinished run: compare shows its history
    **{("losses.json", d): same(OK)  # read by nothing but the loss plot, written by resume
       for d in (*GENERIC, "invalid-json")},
    **{("eval/*/checkpoints.jsonl", d): EVAL_ROWS_REFUSED
       for d in ("flip", "garbage", "bad-counter")},
    ("eval/*/checkpoints.jsonl", "torn-line"): (OK, OK, OK, warn("checkpoints.jsonl")),
    # no rows: an evaluation that never finished; compare reads the training log instead
    ("eval/*/checkpoints.jsonl", "delete"): same(OK),
    **{("eval/*/floors.json", d): EVAL_FLOORS_REFUSED
       for d in ("truncate", "flip", "garbage", "list", "floor-text")},
    ("eval/*/floors.json", "delete"): same(OK),  # an evaluation without floors
    ("eval/*/settings.json", "garbage"): same(OK),  # a record for people: nothing reads it
}


def cells() -> list:
    return [pytest.param(file, damage, command, expected,
                         id=f"{file.replace('checkpoints/', '')}:{damage}:{command}")
            for (file, damage), outcomes in MATRIX.items()
            for command, expected in zip(COMMANDS, outcomes, strict=True)]


def apply(run: Path, file: str, damage: str, wider: Path) -> Path:
    """Damage ``file`` of ``run`` (``eval/*`` is the run's one eval folder)."""
    (path,) = run.glob(file)
    if damage in WIDER:
        path.write_bytes((wider / C2 / WIDER[damage]).read_bytes())
    elif DAMAGES[damage] is None:
        path.unlink()
    else:
        path.write_bytes(DAMAGES[damage](path.read_bytes()))
    return path


def command_line(command: str, run: Path, file: str) -> list:
    """The command of a column; the 'best' rows name the best checkpoint so that the damaged
    pointer is what the command reads."""
    best = file == "checkpoints/best"
    if command == "sample":
        return ["sample", "--run", run, "--num-samples", "50", "--steps", "4", "--no-metrics",
                *(["--checkpoint", "best"] if best else [])]
    if command == "eval":
        return ["eval", "--run", run, "--num-samples", "50", "--steps", "4", "--no-floors",
                "--checkpoints", "best" if best else "all"]
    if command == "resume":
        return ["run", "--resume", run, "--epochs", "3", "--no-plots"]
    return ["compare", run, "--json"]


@pytest.fixture
def plots(monkeypatch: pytest.MonkeyPatch) -> list:
    """``sample`` and ``eval`` end with a matplotlib plot (most of their time here) of the
    arrays and rows the library returned; the matrix records those calls instead."""
    import diffctl_cli.plots

    drawn: list = []
    monkeypatch.setattr(diffctl_cli.plots, "plot_scatter",
                        lambda samples, real, path, title="": drawn.append(samples))
    monkeypatch.setattr(diffctl_cli.plots, "plot_metric_curves",
                        lambda rows, path, floors=None: drawn.append(rows))
    return drawn


@pytest.mark.parametrize(("file", "damage", "command", "expected"), cells())
def test_damage(runs, tmp_path, plots, file, damage, command, expected: Expect) -> None:
    base = runs["evaluated"] if file.startswith("eval/") else runs["run"]
    run = copy_run(base, tmp_path / "run")
    if damage == "escape":  # the pointer's target exists: another run's weights
        copy_run(runs["wider"], tmp_path / "other")
    apply(run, file, damage, runs["wider"])
    before = tree(tmp_path)
    earlier_evals = set(os.listdir(run / "eval")) if (run / "eval").is_dir() else set()
    result = invoke(*command_line(command, run, file))
    assert "Traceback" not in result.err + result.out, result.show()

    if expected.kind == "error":
        assert_clean_error(result, (expected.code,), *expected.names)
        assert tree(tmp_path) == before, "a refused command wrote or changed files"
        return
    assert result.code == expected.code, result.show()
    assert not result.errors, result.show()
    if expected.kind == "warn":
        assert any(all(n in w for n in expected.names) for w in result.warnings), \
            f"no warning naming {expected.names}\n{result.show()}"
    else:
        assert not result.warnings, result.show()
    if expected.kind == "partial":
        failed = [line for line in result.out.splitlines() if line.startswith("failed ")]
        assert len(failed) == 1 and all(n in failed[0] for n in expected.names), result.show()
    check_result(command, run, file, result, expected, earlier_evals, plots)


def check_result(command: str, run: Path, file: str, result: Outcome, expected: Expect,
                 earlier_evals: set[str], plotted: list) -> None:
    """What a successful (or partial) command produced: the checkpoint it used, the rows
    it evaluated, the complete logs of a resumed run, the history compare read."""
    if command == "sample":
        wrote = [line for line in result.out.splitlines() if line.startswith("wrote ")]
        assert len(wrote) == 1, result.show()
        (used,) = expected.uses
        assert f"/samples/{used}-ddim-4steps-50-seed0.npy" in wrote[0], result.show()
        assert len(plotted) == 1
    elif command == "eval":
        (folder,) = (p for p in (run / "eval").iterdir() if p.name not in earlier_evals)
        rows = [json.loads(x) for x in (folder / "checkpoints.jsonl").read_text().splitlines()]
        want = list(expected.uses) if expected.kind == "partial" else [
            "epoch-0001", "epoch-0002"]
        assert [r["checkpoint"] for r in rows] == want, rows
        assert [r["epoch"] for r in rows] == [int(n.split("-")[1]) for n in want], rows
        assert len(plotted) == 1
    elif command == "resume":
        resume_invariants(run, skip=C1 if file.startswith(C1) else None)
    else:
        (entry,) = json.loads(result.out)["runs"].values()
        assert entry["final"] or not (run / "metrics.json").exists(), entry
        if expected.kind == "warn":  # the torn record is left out, the whole lines are kept
            whole = Path(entry["source"]).read_bytes().count(b"\n")
            assert entry["summary"]["test-loss"].get("checkpoints", 0) == whole, entry


def resume_invariants(run: Path, skip: str | None = None) -> None:
    """A resumed run ends complete and consistent, whatever was damaged and skipped: 3
    epochs, every checkpoint intact (but ``skip``, an older one resume had no reason to
    touch), 'last' on epoch-0003, every training step (6) and every checkpoint evaluation
    (3) logged exactly once, no staging folder left."""
    report = json.loads((run / "metrics.json").read_text())
    assert report["train"]["epoch"] == 3 and report["train"]["step"] == 6
    assert resolve_checkpoint(run / "checkpoints", "last").name == "epoch-0003"
    for epoch in (1, 2, 3):
        folder = run / "checkpoints" / f"epoch-{epoch:04d}"
        if folder.exists() and folder != run / str(skip):
            assert read_state(folder)["epoch"] == epoch
            verify_checkpoint(folder, need_optimizer=True, need_ema=True)
    steps = [json.loads(x)["step"] for x in (run / "train.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]
    epochs = [json.loads(x)["epoch"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]


# -- what the matrix cannot show ----------------------------------------------------------------
def test_stale_staging_folders_are_ignored_then_removed(runs, tmp_path, plots) -> None:
    """Half-written ``.epoch-NNNN.*`` folders (a save killed mid-way) are no checkpoint to
    sample or evaluate from, and the next save removes them."""
    run = copy_run(runs["run"], tmp_path / "run")
    for name in (".epoch-0002.k1ll3d", ".epoch-0003.h4lf"):
        (run / "checkpoints" / name).mkdir()
        (run / "checkpoints" / name / "model.safetensors").write_bytes(b"\0" * 100)
    sampled = invoke(*command_line("sample", run, ""))
    assert sampled.code == 0 and not sampled.warnings, sampled.show()
    assert "epoch-0002-ddim" in sampled.out
    resumed = invoke(*command_line("resume", run, ""))
    assert resumed.code == 0 and not resumed.warnings, resumed.show()
    resume_invariants(run)  # among them: no staging folder left


@pytest.mark.parametrize("extra", [
    ["--set", "train.lr=0.1"], ["--config", "other.yaml"], ["--seed", "3"], ["--out", "elsewhere"],
    ["--dataset", "gmm-ring"], ["--denoiser", "mlp"], ["--scheduler", "cosine"],
    ["--sampler", "heun"], ["--steps", "3"], ["--metric", "mmd-rbf"],
], ids=lambda extra: extra[0])
def test_resume_refuses_options_it_would_ignore(runs, tmp_path, monkeypatch, extra) -> None:
    run = copy_run(runs["run"], tmp_path / "run")
    (tmp_path / "other.yaml").write_text("seed: 3\n")
    monkeypatch.chdir(tmp_path)
    before = tree(tmp_path)
    result = invoke("run", "--resume", run, *extra)
    assert_clean_error(result, (2,), extra[0], "--resume")
    assert tree(tmp_path) == before


def _train_args(run: Path, *extra: str) -> list:
    return ["run", "--out", run, "--no-plots", *tiny_sets(METRICS, *extra)]


def _enospc(path: object = None) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def _full_while_saving_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    """safetensors fails writing the second checkpoint's weights."""
    import diffctl.training.checkpoint as checkpoint

    real = checkpoint.save_file

    def save_file(tensors, filename, *args, **kwargs):
        if "/.epoch-0002." in str(filename):
            raise _enospc(filename)
        return real(tensors, filename, *args, **kwargs)
    monkeypatch.setattr(checkpoint, "save_file", save_file)


def _full_while_renaming(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rename that puts the second checkpoint in place fails."""
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        if Path(dst).name == "epoch-0002":
            raise _enospc(dst)
        return real(src, dst, *args, **kwargs)
    monkeypatch.setattr(os, "replace", replace)


def _full_while_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    """Appending the third line (step 3, the first of epoch 2) to train.jsonl fails."""
    import diffctl.runs.directory as directory

    appended = []

    def open_(path, mode="r", *args, **kwargs):
        if Path(path).name == "train.jsonl" and "a" in mode:
            appended.append(path)
            if len(appended) == 3:
                raise _enospc(path)
        return open(path, mode, *args, **kwargs)
    monkeypatch.setattr(directory, "open", open_, raising=False)


@pytest.mark.parametrize(("fill", "names"), [
    (_full_while_saving_weights, ("checkpoint epoch-0002", "kept (epoch-0001)")),
    (_full_while_renaming, ("checkpoint epoch-0002", "kept (epoch-0001)")),
    (_full_while_logging, ("train.jsonl",)),
], ids=["weights", "rename", "log"])
def test_disk_full_keeps_earlier_checkpoints_and_resumes(tmp_path, monkeypatch, plots, fill,
                                                          names) -> None:
    """A full disk while training is one line naming what could not be written (and the
    checkpoints kept), exit 1; nothing half-written stays, and --resume finishes the run."""
    run = tmp_path / "run"
    with monkeypatch.context() as patched:
        fill(patched)
        result = invoke(*_train_args(run))
    assert_clean_error(result, (1,), os.strerror(errno.ENOSPC), *names)
    checkpoints = run / "checkpoints"
    assert [p.name for p in checkpoints.iterdir() if p.is_dir()] == ["epoch-0001"]
    verify_checkpoint(checkpoints / "epoch-0001", need_optimizer=True, need_ema=True)
    assert resolve_checkpoint(checkpoints, "last").name == "epoch-0001"
    resumed = invoke("run", "--resume", run, "--no-plots")
    assert resumed.code == 0 and not resumed.warnings, resumed.show()
    report = json.loads((run / "metrics.json").read_text())
    assert report["train"]["epoch"] == 2
    assert [json.loads(x)["step"] for x in (run / "train.jsonl").read_text().splitlines()] \
        == [1, 2, 3, 4]


def test_disk_full_writing_the_report(tmp_path, monkeypatch) -> None:
    """The final report cannot be written: one line naming it, its temporary file gone; the
    checkpoints are complete, so --resume only evaluates again and writes it."""
    run = tmp_path / "run"
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        if Path(dst).name == "metrics.json":
            raise _enospc(dst)
        return real(src, dst, *args, **kwargs)
    with monkeypatch.context() as patched:
        patched.setattr(os, "replace", replace)
        result = invoke(*_train_args(run))
    assert_clean_error(result, (1,), "metrics.json", os.strerror(errno.ENOSPC))
    assert not (run / "metrics.json").exists() and not (run / ".metrics.json.tmp").exists()
    resumed = invoke("run", "--resume", run, "--no-plots")
    assert resumed.code == 0, resumed.show()
    assert json.loads((run / "metrics.json").read_text())["train"]["epoch"] == 2


def test_sigint_names_the_checkpoint_and_the_resume_command(tmp_path) -> None:
    """Ctrl-C during training: exit 130 and one line with the last checkpoint and the command
    that continues the run; that command finishes it. A subprocess (Popen), whose SIGINT
    handling is reset to Python's default, as for a command typed in a terminal."""
    run = tmp_path / "run"
    epochs = 100
    code = ("import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "from diffctl_cli.app import main; main()")
    argv = [sys.executable, "-c", code, *map(str, _train_args(
        run, f"train.epochs={epochs}", "train.checkpoint_every=20", "train.log_every=20"))]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "200"})
    last = run / "checkpoints" / "last"
    deadline = time.monotonic() + 120
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    result = Outcome(proc.returncode, out, err)
    line = assert_clean_error(result, (130,), "interrupted; the last checkpoint is epoch-",
                              f"continue with: diffctl run --resume {run}")
    stopped = int(line.split("epoch-")[1][:4])
    assert 20 <= stopped < epochs and stopped % 20 == 0, line
    assert f"(epoch {stopped}, step {2 * stopped})" in line
    resumed = invoke("run", "--resume", run, "--no-plots")
    assert resumed.code == 0, resumed.show()
    assert json.loads((run / "metrics.json").read_text())["train"]["epoch"] == epochs
