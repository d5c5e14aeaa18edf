"""Pictures and progress (issue 16 items 5 and 6): sampler comparisons from one x_T, the
samples of every evaluated checkpoint, samples next to compared curves, the HTML report, one
plot style, progress of floors and feature extraction."""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffctl.errors import UsageError
from diffctl.runs import Run, compose
from diffctl.runs import directory as files
from diffctl.runs.directory import options_suffix
from diffctl.runs.sampler_comparison import parse_specs
from diffctl_cli.app import main

# a 2-D run that trains in seconds; T = 30 keeps the "all T steps" rows short
POINTS = ["dataset.n=600", "denoiser.name=mlp", "denoiser.hidden=16", "train.epochs=2",
          "train.checkpoint_every=1", "sample.num_samples=200", "sample.num_steps=5",
          "eval.floor_draws=5", "scheduler.num_train_timesteps=30",
          "sample.progression_samples=50"]
# a tiny UNet on the bundled 16x16 digits
IMAGES = ["denoiser.base_channels=8", "denoiser.channel_mults=[1, 2]", "denoiser.time_dim=32",
          "train.epochs=2", "train.batch_size=128", "train.checkpoint_every=1",
          "sample.num_samples=40", "sample.num_steps=4", "eval.floor_draws=0",
          "eval.metric_options.test-loss.examples=60", "eval.metric_options.test-loss.timesteps=2",
          "sampler.clip_denoised=1.0", "scheduler.num_train_timesteps=50",
          "sample.progression_samples=0"]


def cli(*args: str) -> int:
    with pytest.raises(SystemExit) as info:
        main(list(args))
    return int(info.value.code or 0)


def trained(out: Path, config) -> Path:
    run = Run.create(config, out)
    run.train()
    run.finalize()
    return out


@pytest.fixture(scope="module")
def points_run(tmp_path_factory) -> Path:
    return trained(tmp_path_factory.mktemp("pictures") / "points", compose(overrides=POINTS))


@pytest.fixture(scope="module")
def image_run(tmp_path_factory) -> Path:
    return trained(tmp_path_factory.mktemp("pictures") / "images",
                   compose(denoiser="unet-mini", overrides=IMAGES))


def png_size(path: Path) -> tuple[int, int]:
    assert path.stat().st_size > 2000, path
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


# -- sample --comparison ---------------------------------------------------------------------
def test_every_sampler_starts_from_the_same_x_T(points_run: Path) -> None:
    """Each row's x_T is the same tensor, and each row equals a direct draw with the same
    sampler, steps, options and seed: only the sampler differs between rows."""
    run = Run.open(points_run)
    result = run.compare_samplers("ddim:5,heun:3,dpmpp-2m:4,ancestral:5,ddim:5:eta=1",
                                  num_samples=120, seed=3, save=False)
    assert [r.spec.label for r in result.rows] == ["ddim", "heun", "dpmpp-2m", "ancestral",
                                                   "ddim (eta=1)"]
    assert [r.deterministic for r in result.rows] == [True, True, True, False, False]
    first = result.rows[0].x_T
    assert first.shape == (10, 2)
    for row in result.rows:
        assert torch.equal(row.x_T, first), row.spec
        direct = run.sample(sampler=row.sampler, sampler_options=row.options, steps=row.steps,
                            num_samples=120, seed=3, metrics=False, save=False)
        assert torch.equal(direct.samples, row.samples), row.spec
        assert row.seconds > 0 and np.isfinite(row.value)
    assert not torch.equal(result.rows[0].samples, result.rows[1].samples)
    assert result.metric == "c2st" and result.higher_is_better is False
    assert len(result.floor["values"]) == 5 and result.real.shape == (120, 2)


def test_another_sampler_keeps_the_runs_grid_and_clamp(tmp_path) -> None:
    """The run's grid and x0 clamp (SAMPLER_SHARED_FIELDS) go with its model to another
    sampler: drawing with dpmpp-2m uses the run's leading grid and clamp, not dpmpp-2m's
    defaults; an explicit option still wins."""
    run = Run.create(compose(overrides=[*POINTS, "sampler.spacing=leading",
                                        "sampler.clip_denoised=0.5"]), tmp_path / "r")
    run.train()
    draw = {"sampler": "dpmpp-2m", "steps": 4, "num_samples": 50, "seed": 1, "metrics": False,
            "save": False}
    plain = run.sample(**draw).samples
    same = {"spacing": "leading", "clip_denoised": 0.5}
    assert torch.equal(plain, run.sample(**draw, sampler_options=same).samples)
    for other in ({"spacing": "trailing"}, {"clip_denoised": 10.0}):
        assert not torch.equal(plain, run.sample(**draw, sampler_options=other).samples), other


def test_draws_that_differ_in_a_sampler_option_write_different_files(points_run) -> None:
    """A sample file's name records the sampler options set for the draw (those the run does
    not already set), so a draw with another eta or grid never overwrites the plain one."""
    run = Run.open(points_run)
    own = run.config.sampler.options()
    eta = 0.0 if own["eta"] == 1.0 else 1.0
    spacing = "trailing" if own["spacing"] == "leading" else "leading"
    draw = {"sampler": run.config.sampler.name, "steps": 4, "num_samples": 30, "seed": 2,
            "metrics": False}
    plain = run.sample(**draw)
    other_eta = run.sample(**draw, sampler_options={"eta": eta})
    other_grid = run.sample(**draw, sampler_options={"spacing": spacing})
    paths = [plain.path, other_eta.path, other_grid.path]
    assert len(set(paths)) == 3 and all(p.exists() for p in paths), paths
    assert other_eta.path.name.endswith(f"-eta={eta:g}.npy")
    assert other_grid.path.name.endswith(f"-spacing={spacing}.npy")
    np.testing.assert_array_equal(np.load(plain.path), plain.samples.numpy())
    np.testing.assert_array_equal(np.load(other_eta.path), other_eta.samples.numpy())
    # an option set to the run's own value is the plain draw, under the plain name
    again = run.sample(**draw, sampler_options={"spacing": own["spacing"]})
    assert again.path == plain.path and torch.equal(again.samples, plain.samples)
    assert options_suffix({"clip_denoised": None, "x": "a/b"}) == "-clip_denoised=None-x=a_b"
    assert options_suffix({f"option{i}": "value" for i in range(6)}).startswith("-opts")
    assert options_suffix({}) == ""


def test_sampler_lists() -> None:
    from diffctl.runs.sampler_comparison import SamplerSpec, default_specs, parse_specs

    assert default_specs(1000) == [
        SamplerSpec("ancestral", 1000), SamplerSpec("ddim", 1000, (("eta", 0.0),)),
        SamplerSpec("ddim", 50, (("eta", 0.0),)), SamplerSpec("heun", 20),
        SamplerSpec("dpmpp-2m", 20)]
    assert [s.steps for s in default_specs(30)] == [30, 30, 20, 20]  # ddim 50 -> 30: a duplicate
    assert parse_specs("ancestral:all, heun, ddim:8:eta=0.5", 100, 12) == [
        SamplerSpec("ancestral", 100), SamplerSpec("heun", 12), SamplerSpec("ddim", 8,
                                                                           (("eta", 0.5),))]
    for bad, message in (("ddim:0", "positive integer"), ("ddim:x", "positive integer"),
                         ("ddim:5:eta", "field=value"), ("ddim:200", "exceed"), (",", "empty")):
        with pytest.raises(UsageError, match=message):
            parse_specs(bad, 100, 10)


def test_cli_comparison_of_points_has_a_panel_per_sampler(points_run: Path, capsys) -> None:
    assert cli("sample", "--run", str(points_run), "--comparison", "--num-samples", "150") == 0
    out, err = capsys.readouterr()
    # without a terminal: a line every 10% of the sampler steps and of the floor draws
    assert "compare samplers 100/100 steps" in err and "floors 5/5 draws" in err
    (summary,) = (points_run / "samples").glob("comparison-*-150-seed0-*.json")
    data = json.loads(summary.read_text())
    # the default list at T = 30: ancestral and DDIM over all 30 steps, Heun and DPM++ at 20
    assert [(r["sampler"], r["steps"]) for r in data["rows"]] == [
        ("ancestral", 30), ("ddim", 30), ("heun", 20), ("dpmpp-2m", 20)]
    assert data["metric"] == "c2st" and all(r["value"] is not None for r in data["rows"])
    width, height = png_size(summary.with_suffix(".png"))
    assert width > 2 * height  # four panels side by side
    assert "dpmpp-2m" in out and "real-vs-real floor" in out
    assert cli("sample", "--run", str(points_run), "--comparison", "--grid") == 2
    assert cli("sample", "--run", str(points_run), "--samplers", "nosuch:5") == 2


def test_cli_comparison_of_images_has_a_row_per_sampler(image_run: Path) -> None:
    def height(samplers: str) -> int:
        assert cli("sample", "--run", str(image_run), "--samplers", samplers,
                   "--num-samples", "20") == 0
        path = files.RunDirectory(image_run).comparison_path(
            "epoch-0002", 20, 0, parse_specs(samplers, 50, 4)).with_suffix(".png")
        width, h = png_size(path)
        assert width > 10 * 16  # ten images of 16 px in a row
        return h

    two, three = height("ddim:4,heun:3"), height("ddim:4,heun:3,dpmpp-2m:3")
    assert three > two * 1.2  # one more row


# -- eval: the samples of each checkpoint ----------------------------------------------------
@pytest.mark.parametrize(("fixture", "kept"), [("points_run", (200, 2)),
                                               ("image_run", (16, 1, 16, 16))])
def test_eval_keeps_and_draws_each_checkpoints_samples(fixture, kept, request, capsys) -> None:
    run_dir = request.getfixturevalue(fixture)
    n = "200" if fixture == "points_run" else "20"
    assert cli("eval", "--run", str(run_dir), "--num-samples", n, "--no-floors") == 0
    folder = files.RunDirectory(run_dir).eval_dirs()[-1]
    samples = files.kept_samples(folder)
    assert list(samples) == ["epoch-0001", "epoch-0002"]
    kept = (min(kept[0], int(n)), *kept[1:])
    for path in samples.values():
        assert np.load(path).shape == kept
    assert np.load(folder / files.REAL).shape == kept
    # the kept samples are the first ones the evaluation drew (same seed: same samples)
    direct = Run.open(run_dir).sample(checkpoint="epoch-0002", num_samples=int(n),
                                      metrics=False, save=False).samples[:kept[0]]
    assert np.array_equal(np.load(samples["epoch-0002"]), direct.numpy())
    for name in samples:
        png_size(files.eval_picture_path(folder, name))
    width, height = png_size(folder / files.EVAL_STRIP)
    assert width > 1.5 * height  # two checkpoints side by side
    assert json.loads((folder / files.EVAL_SETTINGS).read_text())["kept_samples"] == kept[0]
    assert "strip.png" in capsys.readouterr().out
    rows = [json.loads(x) for x in (folder / files.EVAL_ROWS).read_text().splitlines()]
    assert all("_kept_samples" not in r for r in rows)


def test_strip_shows_at_most_twelve_checkpoints(tmp_path: Path) -> None:
    from diffctl_cli.sample_plots import plot_sample_strip, strip_selection

    assert strip_selection([str(i) for i in range(30)]) == [0, 3, 5, 8, 11, 13, 16, 18, 21, 24,
                                                              26, 29]
    items = [(f"epoch {i}", np.random.default_rng(i).normal(size=(50, 2))) for i in range(20)]
    width, height = png_size(plot_sample_strip(items, None, tmp_path / "s.png", "strip"))
    assert width > 8 * height


# -- compare: samples next to the curves -----------------------------------------------------
def test_compare_draws_each_runs_samples(points_run: Path, tmp_path: Path, capsys) -> None:
    other = tmp_path / "other"
    shutil.copytree(points_run, other, ignore=shutil.ignore_patterns("eval", "samples"))
    (other / files.SAMPLES).unlink()
    assert cli("compare", str(points_run), str(other), "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["runs"][str(points_run)]["samples_file"] == str(points_run / files.SAMPLES)
    assert data["runs"][str(other)]["samples_file"] is None
    assert cli("compare", str(points_run), str(other), "--out", str(tmp_path / "cmp")) == 0
    width, height = png_size(tmp_path / "cmp" / "compare.png")
    assert height > 500 and width > height  # curves above, a sample panel per run below


# -- report ----------------------------------------------------------------------------------
class Page(HTMLParser):
    """The images (alt -> decoded bytes), table cells and text of a report."""

    def __init__(self) -> None:
        super().__init__()
        self.images: dict[str, bytes] = {}
        self.cells: list[str] = []
        self.text: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs) -> None:
        attrs = dict(attrs)
        if tag == "img":
            prefix = "data:image/png;base64,"
            assert attrs["src"].startswith(prefix)
            self.images[attrs["alt"]] = base64.b64decode(attrs["src"][len(prefix):])
        if tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.cells.append("".join(self._cell))
            self._cell = None

    def handle_data(self, data) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


def pictures_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*.png")
            if "checkpoints" not in p.relative_to(folder).parts}


def test_report_of_a_run_holds_every_plot_and_metric(points_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run <&>"  # a name that must be escaped
    shutil.copytree(points_run, run_dir)
    assert cli("sample", "--run", str(run_dir), "--samplers", "ddim:5,heun:3") == 0
    assert cli("eval", "--run", str(run_dir), "--num-samples", "100") == 0
    assert cli("report", str(run_dir)) == 0
    page = parse(run_dir / files.REPORT_HTML)
    pictures = pictures_of(run_dir)
    assert {"samples.png", "loss.png", "metric_curves.png", "progression.png"} <= set(pictures)
    assert any(name.startswith("eval/") and name.endswith("strip.png") for name in pictures)
    assert page.images == pictures  # every PNG of the run, byte for byte, and nothing else
    report = json.loads((run_dir / files.REPORT).read_text())
    ev = report["eval"]
    for name, value in ev["metrics"].items():
        index = page.cells.index(name)
        assert page.cells[index + 1] == f"{value:.4g}", name
        if name in ev["floors"]:
            assert page.cells[index + 2] == f"{ev['floors'][name]['mean']:.4g}"
    text = "".join(page.text)
    assert "run <&>" in text and "floor p95" in page.cells and "Sampler comparisons" in text
    assert (run_dir / files.CONFIG).read_text().strip() in text


def test_report_of_a_study_has_a_section_per_run(points_run: Path, tmp_path: Path) -> None:
    study = tmp_path / "study"
    for name in ("size-1", "size-2"):
        shutil.copytree(points_run, study / name, ignore=shutil.ignore_patterns("*.png"))
    (study / "sweep.json").write_text(json.dumps({"points": ["size-1", "size-2"]}))
    (study / "analysis").mkdir()
    Image.new("RGB", (40, 30), "white").save(study / "analysis" / "summary.png")
    assert cli("report", str(study)) == 0
    page = parse(study / files.REPORT_HTML)
    text = "".join(page.text)
    assert "size-1" in page.cells and "size-2" in page.cells  # the summary table
    assert '"size-1"' in text  # sweep.json, shown as it is
    assert page.images == pictures_of(study)  # the runs' plots (drawn now) and the analysis
    assert any(k.startswith("size-2/") for k in page.images)
    assert cli("report", str(tmp_path / "nothing")) == 2
    (tmp_path / "empty").mkdir()
    assert cli("report", str(tmp_path / "empty")) == 2


# -- progress and look -----------------------------------------------------------------------
def test_floors_report_each_draw() -> None:
    from diffctl.registry import get_registry
    from diffctl.runs.components import build_dataset
    from diffctl.runs.evaluation import metric_floors

    config = compose(overrides=POINTS)
    seen: list[tuple[int, int]] = []
    floors = metric_floors(get_registry(), ["mmd-rbf", "test-loss", "moons-overall"],
                           config.eval.metric_options, build_dataset(config), 100, 5, 0,
                           on_progress=lambda d, t: seen.append((d, t)))
    # mmd-rbf is zero-centred (20 draws), moons-overall is not (5)
    assert seen == [(i, 25) for i in range(1, 26)]
    assert set(floors) >= {"mmd-rbf", "moons-overall"}


def test_feature_extraction_reports_progress_and_gives_the_same_features() -> None:
    from diffctl_metrics.fidelity import _Images, image_features

    class Extractor:  # stands in for a network: each image's features depend on it alone
        name, layers = "fake", ("pool",)

        def weights_sha256(self) -> str:
            return "0" * 64

        def extract(self, images, device, batch_size):
            self.calls = getattr(self, "calls", 0) + 1
            flat = images.reshape(len(images), -1).float()
            return {"pool": torch.stack([flat.mean(1), flat.std(1)], 1)}

    images = _Images(torch.rand(100, 1, 4, 4) * 2 - 1, "test")
    whole = image_features(Extractor(), images, torch.device("cpu"), 8)
    seen: list[tuple[int, int]] = []
    extractor = Extractor()
    parts = image_features(extractor, images, torch.device("cpu"), 8,
                           on_progress=lambda d, t: seen.append((d, t)))
    assert torch.equal(whole["pool"], parts["pool"])
    assert seen == [(32, 100), (64, 100), (96, 100), (100, 100)] and extractor.calls == 4


def test_progress_lines_without_a_terminal() -> None:
    from rich.console import Console

    from diffctl_cli.progress import Reporter

    buffer = io.StringIO()
    reporter = Reporter("features", "images", console=Console(file=buffer, width=100))
    for _ in range(2):  # two image sets: each reported from the start
        for done in range(0, 101, 5):
            reporter.update(done, 100)
    reporter.close()
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 22 and lines[-1] == "features 100/100 images"


def test_progress_bars_share_one_display_on_a_terminal() -> None:
    from rich.console import Console

    from diffctl_cli import progress

    console = Console(file=io.StringIO(), force_terminal=True, width=100)
    sample = progress.Reporter("sample", "steps", console=console)
    floors = progress.Reporter("floors", "draws", console=console)
    sample.update(1, 4)
    floors.update(1, 5)  # a second live bar while the first is running: no LiveError
    assert progress._Display.users == 2
    floors.close()
    sample.close()
    assert progress._Display.progress is None


def test_plots_share_one_style(points_run: Path, tmp_path: Path) -> None:
    from diffctl_cli import plot_style
    from diffctl_cli.plots import plot_run

    run_dir = tmp_path / "run"
    shutil.copytree(points_run, run_dir)
    written = plot_run(run_dir)
    assert len(written) == 4
    for path in written:
        with Image.open(path) as image:
            assert round(image.info["dpi"][0]) == plot_style.DPI, path.name
    assert plot_style.axis_label("seconds") == "wall time (s)"


@pytest.mark.parametrize("args", [["report", "--help"], ["sample", "--help"]])
def test_new_options_keep_start_up_light(args) -> None:
    code = ("import sys\nfrom diffctl_cli.app import main\n"
            f"sys.argv = ['diffctl', *{args!r}]\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('HEAVY', [m for m in ('torch', 'matplotlib') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert "HEAVY []" in out.stdout, out.stdout[-500:] + out.stderr[-500:]
