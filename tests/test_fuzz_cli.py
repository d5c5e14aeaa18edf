"""Fuzzing the command line: ``diffctl run`` (arguments, ``--set`` values, ``--config``
files) and ``sample``, ``eval``, ``compare`` on a prepared run.

For every generated case (docs/design.md; issue 14): the exit code is 0 (a valid tiny run)
or 2 (bad input), nothing escapes ``main`` (no traceback), a refusal is one ``error:`` line,
and a refused command writes, removes and changes no file. Values are drawn from pools that
mix the interesting (negative, zero, huge, ``.inf``/``.nan``, wrong types, unknown keys,
empty, unicode, path-like and undecodable strings) with small valid ones, so that a case
that is accepted still finishes in a fraction of a second. Examples are derandomized and
no example database is kept, so CI runs the same cases every time.
"""

from __future__ import annotations

import contextlib
import itertools
from pathlib import Path

import pytest
import yaml
from cli_harness import Outcome, assert_clean_error, build_tiny_run, invoke, tiny_sets, tree
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

FUZZ = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow,
                                       HealthCheck.function_scoped_fixture])

# -- value pools ----------------------------------------------------------------------------------
#: Odd strings: empty, blank, unicode, path-like, YAML-significant, an undecodable argv byte
#: (Python hands those to a program as lone surrogates).
ODD_TEXT = ["", " ", "é", "名前", "🙂", "../x", "../../etc/passwd", "/dev/null", "a/b",
            "C:\\x", "~", "-", "--", "'", '"', "#", ": ", "- x", "{", "[", "\\", "\t",
            "\udcff", "x\udce9y", "nul\x01", "a" * 300]
#: Values of ``--set key=VALUE`` as the user types them (parsed as YAML).
SPECIAL_VALUES = [
    "0", "-1", "1", "2", "3", "7", "-10", "1.5", "-0.0", "1e-300", "1e300", "0.5",
    "1e3", "10000000000000", "18446744073709551616", "9223372036854775808",
    str(10**40), ".inf", "-.inf", ".nan", "inf", "nan", "null", "~", "true", "false",
    "yes", "[]", "{}", "[1, 2]", "[.nan]", "[true]", "{a: 1}", "'1'", "!!binary AAAA",
    "*x", "&a [1]", "0x10", "1_000",
]
#: Config keys: fields of every section, component options, unknown keys and sections,
#: malformed paths.
KNOWN_KEYS = [
    "seed", "name", "dataset.n", "dataset.test_fraction", "dataset.noise", "dataset.seed",
    "denoiser.hidden", "denoiser.num_layers", "denoiser.time_dim", "denoiser.activation",
    "denoiser.prediction", "scheduler.num_train_timesteps", "scheduler.beta_end",
    "sampler.eta", "sampler.spacing", "sampler.guidance_scale", "train.epochs",
    "train.batch_size", "train.lr", "train.weight_decay", "train.warmup_steps",
    "train.grad_clip", "train.ema_decay", "train.log_every", "train.checkpoint_every",
    "train.device", "train.best_metric", "train.early_stopping_patience", "train.precision",
    "train.optimizer", "sample.num_steps", "sample.num_samples", "sample.batch_size",
    "sample.use_ema", "eval.metrics", "eval.floor_draws", "eval.during_training",
    "eval.during_training_samples", "eval.metric_options.mmd-rbf.scales",
    "eval.metric_options.mmd-rbf.bandwidth", "eval.metric_options.test-loss.examples",
    "eval.reconstruction_metrics",
]
ODD_KEYS = ["nosuch", "nosuch.x", "train.nosuch", "denoiser.nosuch", "dataset", "train",
            "eval.metric_options.nosuch.x", "", ".", "train.", ".lr", "train..lr",
            "dataset.name", "denoiser.name", "sampler.name", "scheduler.name", "名前.x"]
#: Component names: our own (points only, so an accepted case stays fast), near misses, odd.
NAMES = ["two-moons", "gmm-ring", "spiral", "mlp", "residual-mlp", "ddim", "heun", "euler",
         "linear", "cosine", "mmd-rbf", "test-loss", "fid", "TWO-MOONS", "two_moons", "dim",
         "nosuch", *ODD_TEXT[:12]]

texts = st.one_of(st.sampled_from(ODD_TEXT),
                  st.text(st.characters(blacklist_characters="\x00"), max_size=8))
values = st.one_of(st.sampled_from(SPECIAL_VALUES), texts)
keys = st.one_of(st.sampled_from(KNOWN_KEYS), st.sampled_from(ODD_KEYS))
overrides = st.lists(st.tuples(keys, values).map(lambda kv: f"{kv[0]}={kv[1]}"),
                     min_size=1, max_size=3)
#: Counts and seeds on the command line: out of range, huge, not integers, a few valid.
numbers = st.sampled_from(["-5", "-1", "0", "1", "2", "3", "4", "17", "50",
                           "9223372036854775807", "9223372036854775808",
                           "18446744073709551616", "100000000000", "1.5", "nan", "abc", ""])


# -- running a case -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def prepared(base: Path) -> Path:
    """A finished tiny run for sample, eval and compare."""
    return build_tiny_run(base / "prepared")


@pytest.fixture(autouse=True)
def no_plots(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plots draw what the library returned and take most of an accepted case's time; the
    fuzz is about the inputs, so they are replaced by writing an empty file."""
    import diffctl_cli.plots

    def touch(*args, **kwargs) -> None:
        return None
    for name in ("plot_scatter", "plot_metric_curves", "plot_comparison"):
        monkeypatch.setattr(diffctl_cli.plots, name, touch)


counter = itertools.count()


def check(result: Outcome, before: dict, after: dict) -> None:
    """The promise for every case: exit 0 or 2, no traceback, a refusal is one line and
    leaves every file as it was."""
    if currently_in_test_context():
        event(f"exit {result.code}")  # --hypothesis-show-statistics: accepted vs refused
    assert result.code in (0, 2), result.show()
    assert "Traceback" not in result.err + result.out, result.show()
    if result.code == 2:
        assert_clean_error(result, (2,))
        assert after == before, f"a refused command changed files\n{result.show()}"
    else:
        assert not result.errors, result.show()


def run_case(base: Path, argv: list, files: dict[str, bytes] | None = None,
             watch: Path | None = None) -> tuple[Outcome, Path]:
    """``diffctl ARGV`` run in a fresh folder (the current directory, holding ``files``),
    checked with :func:`check` over every folder of the module (``base``) and ``watch``.
    Returns the outcome and the folder."""
    sandbox = base / f"case-{next(counter)}"
    sandbox.mkdir()
    for name, data in (files or {}).items():
        (sandbox / name).parent.mkdir(parents=True, exist_ok=True)
        (sandbox / name).write_bytes(data)
    roots = [base] if watch is None else [base, watch]
    before = [tree(r) for r in roots]
    with contextlib.chdir(sandbox):
        result = invoke(*argv)
    for root, snapshot in zip(roots, before, strict=True):
        check(result, snapshot, tree(root))
    return result, sandbox


def assert_finished(result: Outcome, run: Path) -> None:
    """An accepted ``run`` trained, sampled and evaluated: its report is there."""
    assert (run / "config.yaml").is_file() and (run / "metrics.json").is_file(), result.show()


# -- diffctl run ----------------------------------------------------------------------------------
@FUZZ
@given(sets=overrides)
def test_run_set_values(base: Path, sets: list[str]) -> None:
    """``--set`` overrides of any key with any value on top of the tiny run."""
    argv = ["run", "--out", "out", "--no-plots", *tiny_sets(),
            *[a for s in sets for a in ("--set", s)]]
    result, sandbox = run_case(base, argv)
    if result.code == 0:
        assert_finished(result, sandbox / "out")


def config_documents() -> st.SearchStrategy[bytes]:
    """Config files: random bytes, text with undecodable bytes, YAML of random structures
    over known and odd keys, and YAML that is not a mapping."""
    scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20),
                        st.floats(allow_nan=True, allow_infinity=True), texts)
    tree_values = st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["name", "n", "x", "lr"]),
                                                     inner, max_size=3)), max_leaves=6)
    sections = st.dictionaries(
        st.sampled_from(["seed", "name", "dataset", "denoiser", "sampler", "scheduler",
                         "train", "sample", "eval", "nosuch"]), tree_values, max_size=4)

    def dump(data) -> bytes:
        return yaml.safe_dump(data, allow_unicode=True).encode("utf-8", "surrogateescape")
    return st.one_of(
        st.binary(max_size=64),
        st.tuples(st.binary(max_size=8), texts).map(
            lambda bt: b"seed: 1\n" + bt[0] + bt[1].encode("utf-8", "surrogateescape")),
        st.just(b"\xff\xfe\x00s\x00e\x00e\x00d\x00"), st.just(b"seed: \x80\n"),
        sections.map(dump), tree_values.map(dump))


@FUZZ
@given(document=config_documents())
def test_run_config_files(base: Path, document: bytes) -> None:
    """``--config FILE`` with any bytes in FILE (the tiny run's ``--set`` on top)."""
    argv = ["run", "--config", "config.yaml", "--out", "out", "--no-plots", *tiny_sets()]
    result, sandbox = run_case(base, argv, {"config.yaml": document})
    if result.code == 0:
        assert_finished(result, sandbox / "out")


@FUZZ
@given(out=st.one_of(st.sampled_from(["out", "a/b/c", "../sibling", "./", ".", "existing",
                                      "a-file", "a-file/below", "/dev/null",
                                      " ", ""]),
                     # an accepted run stays inside this module's folder
                     texts.filter(lambda t: not t.startswith(("/", "~")) and ".." not in t)),
       seed=st.one_of(st.none(), numbers),
       steps=st.one_of(st.none(), numbers),
       component=st.one_of(st.none(), st.tuples(
           st.sampled_from(["--dataset", "--denoiser", "--sampler", "--scheduler", "--metric"]),
           st.sampled_from(NAMES))))
def test_run_options(base: Path, out: str, seed: str | None, steps: str | None,
                     component: tuple[str, str] | None) -> None:
    """``--out``, ``--seed``, ``--steps`` and component names."""
    argv = ["run", "--out", out, "--no-plots", *tiny_sets()]
    argv += ["--seed", seed] if seed is not None else []
    argv += ["--steps", steps] if steps is not None else []
    argv += list(component) if component else []
    files = {"a-file": b"not a directory\n", "existing/keep.txt": b"kept\n"}
    result, sandbox = run_case(base, argv, files)
    if result.code == 0:
        assert_finished(result, sandbox / out)
        assert (sandbox / "existing/keep.txt").read_bytes() == b"kept\n"


# -- sample, eval, compare on a prepared run -------------------------------------------------------
def flags(**options: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    """Command-line flags, each present or not: ``--num-samples 5 --seed -1 ...``."""
    return st.fixed_dictionaries({}, optional=options).map(
        lambda chosen: [a for name, value in chosen.items()
                        for a in (f"--{name.replace('_', '-')}", value)])


checkpoint_names = st.one_of(st.sampled_from(
    ["last", "best", "epoch-0001", "epoch-0002", "epoch-0003", "epoch-1", "../prepared",
     "checkpoints/last", ".", "..", "all", "epoch-0001,epoch-0002", ",", "epoch-0001,,"]),
    texts)
sampler_sets = st.one_of(overrides.map(lambda s: s[0]), st.tuples(
    st.sampled_from(["sampler.eta", "sampler.spacing", "sampler.guidance_scale",
                     "sampler.nosuch", "sampler.name", "sampler"]), values).map(
    lambda kv: f"{kv[0]}={kv[1]}"))


@FUZZ
@given(options=flags(
    steps=numbers, num_samples=numbers, seed=numbers, label=numbers,
    guidance=st.sampled_from(["0", "1", "-1", "nan", "inf", "1e308", "x", "3.5"]),
    checkpoint=checkpoint_names, sampler=st.sampled_from(NAMES),
    device=st.sampled_from(["cpu", "auto", "tpu", "cuda:x", "mps:0", "cpu:0", "", "CPU"]),
    set=sampler_sets, inpaint=texts))
def test_sample_options(base: Path, prepared: Path, options: list[str]) -> None:
    argv = ["sample", "--run", prepared, *options]
    if "--num-samples" not in options:
        argv += ["--num-samples", "50"]  # the run's own 50, said explicitly
    result, _ = run_case(base, argv, watch=prepared)
    if result.code == 0:
        assert "wrote " in result.out and (prepared / "samples").is_dir(), result.show()


@FUZZ
@given(options=flags(
    steps=numbers, num_samples=numbers, seed=numbers,
    threads=st.sampled_from(["-1", "0", "1", "2", "x", "1.5"]),
    workers=st.sampled_from(["-1", "0", "1", "x", ""]), checkpoints=checkpoint_names,
    metric=st.sampled_from(NAMES), device=st.sampled_from(["cpu", "tpu", "", "cuda:1"])))
def test_eval_options(base: Path, prepared: Path, options: list[str]) -> None:
    argv = ["eval", "--run", prepared, "--no-floors", *options]
    if "--num-samples" not in options:
        argv += ["--num-samples", "50"]
    result, _ = run_case(base, argv, watch=prepared)
    if result.code == 0:
        assert "results: " in result.out, result.show()


@FUZZ
@given(runs=st.lists(st.sampled_from(["PREPARED", "PREPARED/checkpoints", "nosuch", "a-file",
                                      ".", "", "../", "é"]), min_size=1, max_size=3),
       metric=st.one_of(st.none(), st.sampled_from(NAMES)),
       out=st.one_of(st.none(), st.sampled_from(["plot", "a-file", "a-file/x", "../p"])))
def test_compare_options(base: Path, prepared: Path, runs: list[str], metric: str | None,
                         out: str | None) -> None:
    argv = ["compare", *[r.replace("PREPARED", str(prepared)) for r in runs]]
    argv += ["--metric", metric] if metric else []
    argv += ["--out", out] if out else []
    result, _ = run_case(base, argv, files={"a-file": b"x"}, watch=prepared)
    if result.code == 0:
        assert "run comparison" in result.out, result.show()


# -- the bad inputs of issue 14, one by one ------------------------------------------------
RUN = "PREPARED"
ISSUE_14 = [  # (arguments, fragments of the one error line)
    (["run", "--config", "garbage.yaml"], ["garbage.yaml", "UTF-8"]),
    (["run", "--seed", "18446744073709551616"], ["seed", "9223372036854775807"]),
    (["run", "--out", "a-file"], ["a-file", "not a directory"]),
    (["run", "--out", "/dev/null"], ["/dev/null", "not a directory"]),
    (["run", "--out", "a-file/below"], ["a-file", "not a directory"]),
    (["run", "--out", ""], ["--out is empty"]),
    (["run", "--set", "sample.num_samples=1000000000000"], ["memory", "sample.num_samples"]),
    (["run", "--set", "dataset.n=1000000000000"], ["memory", "dataset.n"]),
    (["run", "--set", "denoiser.hidden=1000000"], ["memory", "denoiser"]),
    (["run", "--set", "dataset.test_fraction=0"], ["empty test split"]),
    (["run", "--set", "dataset.n=2"], ["empty test split"]),
    (["run", "--set", "eval.metrics=[fid]"], ["fid", "points"]),
    (["run", "--set", "train.lr=.inf"], ["train.lr", "finite"]),
    (["run", "--set", "train.weight_decay=.inf"], ["train.weight_decay", "finite"]),
    (["run", "--set", "eval.metric_options.mmd-rbf.scales=[.nan]"], ["scales", "finite"]),
    (["run", "--set", "train.device=tpu"], ["train.device"]),
    (["run", "--set", "train.epochs=true"], ["train.epochs", "true or false"]),
    (["sample", "--run", RUN, "--num-samples", "-5"], ["--num-samples", "-5"]),
    (["sample", "--run", RUN, "--num-samples", "0"], ["--num-samples", "0"]),
    (["sample", "--run", RUN, "--num-samples", "1"], ["at least 2"]),
    (["sample", "--run", RUN, "--num-samples", "100000000000"], ["memory", "--num-samples"]),
    (["sample", "--run", RUN, "--steps", "0"], ["--steps"]),
    (["sample", "--run", RUN, "--device", "tpu"], ["tpu"]),
    (["sample", "--run", RUN, "--set", "garbage"], ["sampler options only", "garbage"]),
    (["sample", "--run", RUN, "--seed", "-1"], ["--seed", "-1"]),
    (["sample", "--run", RUN, "--seed", "18446744073709551616"], ["--seed"]),
    (["eval", "--run", RUN, "--seed", "-3"], ["--seed", "-3"]),
    (["eval", "--run", RUN, "--checkpoints", "a" * 300], ["File name too long"]),
    (["compare", RUN, "--metric", "nosuch"], ["unknown metric 'nosuch'"]),
    (["compare", RUN, "--out", "a-file"], ["a-file", "not a directory"]),
]


@pytest.mark.parametrize(("args", "fragments"), ISSUE_14,
                         ids=lambda v: " ".join(v)[:60] if isinstance(v, list) else None)
def test_issue_14_bad_inputs(base: Path, prepared: Path, args: list[str],
                             fragments: list[str]) -> None:
    """Each bad input the issue lists: one line naming the setting or file, exit 2, nothing
    written (the tiny run's settings come first, so an accepted run would be quick)."""
    argv = [a.replace(RUN, str(prepared)) for a in args]
    if argv[0] == "run":
        argv[1:1] = ["--no-plots", *tiny_sets()]
    files = {"a-file": b"x\n", "garbage.yaml": b"seed: \xff\xfe\x80\n"}
    result, _ = run_case(base, argv, files, watch=prepared)
    assert_clean_error(result, (2,), *fragments)
