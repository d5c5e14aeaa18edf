"""CI checks of the example third-party plugin (examples/diffctl-plugin-example).

requirements-dev.txt installs it, so these tests fail, rather than skip, when it is missing:
a plugin that stops installing, listing or running is exactly what they are for. Listing
without importing torch with it installed is test_cli.py's test_listing_never_imports_torch;
its own conformance tests live in examples/diffctl-plugin-example/tests.
"""

from __future__ import annotations

import ast
import io
import json
import os
import subprocess
import sys
import tokenize
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import yaml

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "diffctl-plugin-example"
#: a distribution whose plugin fails to import (see tests/test_plugin_broken.py)
BROKEN = Path(__file__).resolve().parent / "fixtures" / "broken-plugin"
COMPONENTS = {"dataset:spiral", "sampler:euler-maruyama", "metric:energy-distance",
              "logger:markdown"}
# a run small enough for a unit test (compare tests/test_run_2d.py's SMALL)
SMALL = ["dataset.n=2000", "train.epochs=2", "train.batch_size=128", "sample.num_samples=300",
         "sample.num_steps=20", "eval.floor_draws=5", "sample.progression_samples=50"]


@pytest.fixture(autouse=True, scope="module")
def _example_installed() -> None:
    try:
        metadata.distribution("diffctl-plugin-example")
        import diffctl_plugin_example  # noqa: F401
    except (metadata.PackageNotFoundError, ImportError) as exc:
        pytest.fail(f"the example plugin is not installed ({exc}); install everything with "
                    "`python -m pip install -r requirements-dev.txt` or just "
                    "`pip install -e examples/diffctl-plugin-example`", pytrace=False)


def diffctl(*args: str, cwd: Path | None = None, pythonpath: Path | None = None
            ) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DIFFCTL_LOAD_PLUGINS", "DIFFCTL_STRICT_PLUGINS")}
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath),
                                                          env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-c", "from diffctl_cli.app import main; main()",
                           *args], cwd=cwd, capture_output=True, text=True, env=env,
                          timeout=600)


def test_list_plugins_shows_the_example_loaded() -> None:
    out = diffctl("list", "plugins", "--json")
    assert out.returncode == 0, out.stderr
    example = {p["name"]: p for p in json.loads(out.stdout)}["example"]
    assert example["status"] == "loaded", example["error"]
    assert example["distribution"] == "diffctl-plugin-example"
    assert example["version"] == metadata.version("diffctl-plugin-example")
    assert example["module"] == "diffctl_plugin_example.plugin"
    assert set(example["components"]) == COMPONENTS
    assert "euler-maruyama" in diffctl("list", "sampler").stdout
    shown = json.loads(diffctl("show", "dataset", "spiral", "--json").stdout)
    assert shown["defaults"]["arms"] == 2 and "arms" in shown["config"]["properties"]
    assert "energy-distance" in diffctl("--help").stdout


def test_run_with_its_dataset_and_sampler_next_to_a_broken_plugin(tmp_path: Path) -> None:
    """`diffctl run` end to end on the example's dataset and sampler, with a plugin that fails
    to import on the path: it is listed as failed and nothing else is affected."""
    broken = BROKEN
    sets = [x for s in SMALL for x in ("--set", s)]
    out = diffctl("run", "--dataset", "spiral", "--sampler", "euler-maruyama", "--denoiser",
                  "mlp", *sets, "--no-plots", "--out", "r", cwd=tmp_path, pythonpath=broken)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    run = tmp_path / "r"
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert (config["dataset"]["name"], config["sampler"]["name"]) == ("spiral",
                                                                      "euler-maruyama")
    final = json.loads((run / "metrics.json").read_text())
    # a dataset that declares no metadata gets the metrics that declare themselves defaults
    # for its data kind (points), found by building it
    assert "mmd-rbf" in final["eval"]["metrics"] and "moons-overall" not in final["eval"][
        "metrics"]
    samples = np.load(run / "samples.npy")
    assert samples.shape == (300, 2) and np.isfinite(samples).all()
    # the plugin's command on the run's output, still next to the broken plugin
    out = diffctl("energy-distance", "r/samples.npy", "r/real.npy", "--json", cwd=tmp_path,
                  pythonpath=broken)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["energy-distance"] >= 0
    plugins = {p["name"]: p for p in json.loads(
        diffctl("list", "plugins", "--json", pythonpath=broken).stdout)}
    assert plugins["broken"]["status"] == "failed"
    assert plugins["example"]["status"] == "loaded"


def test_energy_distance_command_errors_are_one_line(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.zeros((3, 2)))
    for args, message in ((["a.npy", "missing.npy"], "no such file"),
                          (["a.npy", "a.npy", "--exponent", "3"], "exponent")):
        out = diffctl("energy-distance", *args, cwd=tmp_path)
        assert out.returncode == 2, out.stderr
        assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1


def code_lines(source: str) -> int:
    """Lines holding code: not blank, not only a comment, not part of a docstring."""
    docstrings: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                    and isinstance(first.value.value, str)):
                docstrings.update(range(first.lineno, first.end_lineno + 1))
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
            tokenize.ENDMARKER}
    lines = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in skip:
            lines.update(n for n in range(tok.start[0], tok.end[0] + 1) if n not in docstrings)
    return len(lines)


def _definition(path: Path, match) -> str:
    """The source of the first AST node of ``path`` for which ``match`` holds."""
    source = path.read_text()
    tree = ast.parse(source)
    nodes = [n for top in tree.body for n in ast.walk(top) if match(n)]
    assert nodes, f"nothing matched in {path}"
    return ast.get_source_segment(source, nodes[0]) or ""


def test_the_example_sampler_is_at_most_30_lines_of_code() -> None:
    """The sampler module, its config class and its registry.add call; plus one entry-point
    line in pyproject.toml (the plugin's, shared by all its components)."""
    src = EXAMPLE / "src" / "diffctl_plugin_example"
    sampler = code_lines((src / "sampler.py").read_text())
    config = code_lines(_definition(src / "configs.py", lambda n: isinstance(
        n, ast.ClassDef) and n.name == "EulerMaruyamaConfig"))
    add = code_lines(_definition(src / "plugin.py", lambda n: isinstance(n, ast.Call) and any(
        isinstance(a, ast.Constant) and a.value == "euler-maruyama" for a in n.args)))
    assert config >= 1 and add >= 1  # both were found
    assert sampler + config + add <= 30, (sampler, config, add)
    entry_points = [line for line in (EXAMPLE / "pyproject.toml").read_text().splitlines()
                    if "diffctl_plugin_example.plugin" in line]
    assert entry_points == ['example = "diffctl_plugin_example.plugin"']
    assert code_lines('"""doc"""\n\nx = 1  # one\n# none\ndef f():\n    """d\n    d"""\n'
                      '    return (1,\n            2)\n') == 4
