"""``diffctl sample``: draw (or inpaint) with any sampler from a trained run, then print and
plot. The work is :meth:`diffctl.runs.Run.sample` / :meth:`~diffctl.runs.Run.inpaint`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from diffctl_cli.console import make_console

console = make_console()


def sample(
    run_dir: Annotated[Path | None, typer.Option("--run", help="Run directory.")] = None,
    model_file: Annotated[Path | None, typer.Option(
        "--model", help="A model file written by 'diffctl export' (instead of --run).")]
    = None,
    out: Annotated[Path | None, typer.Option(
        help="With --model: folder for the samples (default ./samples).")] = None,
    png_dir: Annotated[Path | None, typer.Option(
        help="Images: also write one PNG per sample into this folder (labels.csv for "
        "class-conditional runs), e.g. for external FID tools.")] = None,
    sampler: Annotated[str | None, typer.Option(help="Sampler (default: the run's).")] = None,
    steps: Annotated[int | None, typer.Option(help="Sampler steps.")] = None,
    num_samples: Annotated[int | None, typer.Option(help="How many samples.")] = None,
    checkpoint: Annotated[str, typer.Option(help="last, best or a checkpoint folder.")]
    = "last",
    seed: Annotated[int | None, typer.Option(
        help="Run seed whose 'sample' stream draws the noise (default: the run's).")] = None,
    grid: Annotated[bool, typer.Option("--grid", help="Images: write a PNG grid (one row "
                                       "per class for class-conditional runs).")] = False,
    progressive: Annotated[bool, typer.Option(
        "--progressive", help="Images: write the 10x10 denoising-progression grid.")] = False,
    label: Annotated[int | None, typer.Option(help="Class label for every sample "
                                              "(class-conditional runs).")] = None,
    guidance: Annotated[float | None, typer.Option(
        help="Classifier-free guidance scale (default: the sampler config's).")] = None,
    inpaint: Annotated[str | None, typer.Option(
        help="Images: keep one region of held-out images (left, right, top, bottom, or "
        "center: keep the border) and fill the rest; reports PSNR of the filled region and "
        "SSIM (default 100 images).")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Sampler option: sampler.field=value (repeatable).")] = None,
    device: Annotated[str | None, typer.Option(
        help="auto, cpu, cuda or mps (default: the run's train.device).")] = None,
    metrics: Annotated[bool, typer.Option(help="Score the samples with the run's metrics "
                                          "and floors.")] = True,
    strict: Annotated[bool, typer.Option(
        "--strict", help="Refuse a damaged 'last' checkpoint instead of falling back to the "
        "newest intact one.")] = False,
    comparison: Annotated[bool, typer.Option(
        "--comparison", help="One figure from the same x_T, one row per sampler (points: one "
        "panel per sampler), each titled with its steps, wall time and the run's headline "
        "metric on --num-samples samples. Default samplers: ancestral and DDIM (eta 0) over "
        "all T steps, DDIM 50, Heun and DPM-Solver++ 20; see --samplers.")] = False,
    samplers: Annotated[str | None, typer.Option(
        help="The samplers of --comparison (implies it): name[:steps|all][:field=value], "
        "comma-separated, e.g. ddim:50,heun:20,ddim:50:eta=1.")] = None,
) -> None:
    """Draw samples from a trained run with any sampler; writes
    samples/<checkpoint>-<sampler>-<steps>steps-<n>-seed<seed>.npy."""
    from diffctl.errors import UsageError
    from diffctl.runs import Run
    from diffctl_cli.progress import reporting, sampling

    if (run_dir is None) == (model_file is None):
        raise UsageError("pass one of --run (a run directory) or --model (an exported model)")
    options = _sampler_options(set_ or [])
    if model_file is not None:
        if inpaint or progressive or grid or not metrics or strict or checkpoint != "last":
            raise UsageError("with --model: --num-samples, --steps, --sampler, --seed, "
                             "--label, --guidance, --set, --png-dir and --out only")
        _sample_model(model_file, out or Path("samples"), png_dir, sampler, options, steps,
                      num_samples, seed, label, guidance, device)
        return
    if out is not None:
        raise UsageError("--out goes with --model; run samples go to <run>/samples/")
    run = Run.open(run_dir)
    if comparison or samplers:
        others = [name for name, given in (
            ("--sampler", sampler), ("--steps", steps), ("--inpaint", inpaint),
            ("--grid", grid), ("--progressive", progressive), ("--label", label),
            ("--guidance", guidance), ("--set", set_), ("--png-dir", png_dir)) if given]
        if others:
            raise UsageError(f"--comparison takes --samplers, --num-samples, --checkpoint, "
                             f"--seed, --device and --no-metrics; not {', '.join(others)}")
        _compare_samplers(run, samplers, checkpoint, num_samples, seed, device, metrics,
                          strict)
        return
    if (grid or progressive) and run.data_kind != "images":
        raise UsageError("--grid and --progressive are for image runs")
    if inpaint:
        with reporting("inpaint") as on_progress:
            result = run.inpaint(inpaint, checkpoint=checkpoint, sampler=sampler,
                                 sampler_options=options, steps=steps,
                                 num_images=num_samples or 100, seed=seed, device=device,
                                 strict=strict, on_progress=on_progress)
        _show_inpaint(run, result)
        return
    if png_dir is not None and run.data_kind != "images":
        raise UsageError("--png-dir is for image runs")
    with sampling() as (on_progress, on_stage):
        result = run.sample(checkpoint=checkpoint, sampler=sampler, sampler_options=options,
                            steps=steps, num_samples=num_samples, seed=seed, label=label,
                            guidance_scale=guidance, device=device, progression=progressive,
                            metrics=metrics, strict=strict, on_progress=on_progress,
                            on_stage=on_stage)
    _show_samples(run, result, grid)
    if png_dir is not None:
        from diffctl.runs.export import write_pngs

        paths = write_pngs(result.samples, png_dir, _labels(run, result))
        console.print(f"PNGs: {len(paths)} files in {png_dir}")


def _compare_samplers(run, samplers, checkpoint, num_samples, seed, device, metrics,
                      strict) -> None:
    """``sample --comparison``: the library draws and scores, the figure is drawn here."""
    from diffctl_cli.progress import sampling
    from diffctl_cli.sample_plots import plot_sampler_comparison
    from diffctl_cli.tables import sampler_table

    with sampling("compare samplers") as (on_progress, on_stage):
        result = run.compare_samplers(samplers, checkpoint=checkpoint, num_samples=num_samples,
                                      seed=seed, device=device, metrics=metrics,
                                      strict=strict, on_progress=on_progress,
                                      on_stage=on_stage)
    console.print(sampler_table(result))
    figure = plot_sampler_comparison(result, result.path.with_suffix(".png"))
    console.print(f"comparison: {figure} (summary {result.path.name})")


def _labels(run, result):
    """Each sample's class for labels.csv: the forced label, else i mod num_classes."""
    import torch

    if result.labels is not None:
        return result.labels
    k = run.config.denoiser.options().get("num_classes")
    return torch.arange(len(result.samples)) % k if k else None


def _sample_model(path: Path, out: Path, png_dir: Path | None, sampler, options, steps,
                  num_samples, seed, label, guidance, device) -> None:
    """``sample --model``: draw from an exported model file, no run directory."""
    import time

    import numpy as np

    import diffctl

    model = diffctl.load_model(str(path), device=device)
    if guidance is not None:
        options = {**options, "guidance_scale": guidance}
    n = num_samples or model.config.sample.num_samples
    started = time.perf_counter()
    samples = model.sample(n, steps=steps, seed=seed, sampler=sampler, sampler_options=options,
                           label=label)
    out.mkdir(parents=True, exist_ok=True)
    name = sampler or model.config.sampler.name
    k = steps or model.config.sample.num_steps
    seed = model.config.seed if seed is None else seed
    target = out / f"{path.stem}-{name}-{k}steps-{n}-seed{seed}.npy"
    np.save(target, samples.numpy())
    console.print(f"wrote {target} ({n} samples, {name}, {k} steps, "
                  f"{time.perf_counter() - started:.1f} s)")
    if png_dir is not None:
        from diffctl.runs.export import write_pngs

        num_classes = model.config.denoiser.options().get("num_classes")
        labels = None
        if num_classes:
            import torch

            labels = torch.full((n,), label) if label is not None else torch.arange(n) % \
                num_classes
        console.print(f"PNGs: {len(write_pngs(samples, png_dir, labels))} files in {png_dir}")


def _sampler_options(overrides: list[str]) -> dict:
    """``--set sampler.x=v`` as sampler options; anything else is an error, not ignored."""
    from diffctl.errors import UsageError
    from diffctl.runs.config import apply_overrides

    bad = [s for s in overrides if not s.startswith("sampler.") or s.startswith("sampler.name")]
    if bad:
        raise UsageError(f"sample --set takes sampler options only (sampler.field=value; the "
                         f"sampler itself is --sampler), got {', '.join(bad)}")
    return apply_overrides({}, overrides).get("sampler", {})


def _show_samples(run, result, grid: bool) -> None:
    import numpy as np

    from diffctl_cli.tables import metrics_table

    samples = result.samples.numpy()
    n = len(samples)
    console.print(f"wrote {result.path} ({n} samples, {result.checkpoint}, {result.sampler}, "
                  f"{result.steps} steps, {result.seconds:.1f} s)")
    if result.note:
        console.print(result.note)
    if result.metrics:
        console.print(metrics_table(f"metrics on {n} samples ({result.sampler}, "
                                    f"{result.steps} steps)", result.metrics, result.floors))
    images = samples.ndim == 4
    stem = result.path.with_suffix("")
    if not images and samples.shape[1] == 2 and result.real is not None:
        from diffctl_cli.plots import plot_scatter

        plot_scatter(samples, result.real.numpy(), stem.with_suffix(".png"),
                     f"{result.sampler}, {result.steps} steps")
    if grid:
        from diffctl_cli.image_plots import class_grid, sample_grid

        k = run.config.denoiser.options().get("num_classes")
        if k and result.labels is None:
            out = class_grid(samples, np.arange(n) % k, k, stem.with_suffix(".png"))
        else:
            out = sample_grid(samples, stem.with_suffix(".png"))
        console.print(f"grid: {out}")
    if result.trajectory is not None:
        from diffctl_cli.image_plots import progression_grid

        xs = np.stack([x[:10].numpy() for x in result.trajectory.xs])
        out = progression_grid(xs, stem.with_name(stem.name + "-progression.png"))
        console.print(f"progression: {out} ({xs.shape[1]} samples x {xs.shape[0]} states, x_T "
                      "to x_0)")


def _show_inpaint(run, result) -> None:
    import torch

    from diffctl_cli.image_plots import save_png, tile

    r = result.result
    shape = tuple(r.original.shape[1:])
    masked = r.original * r.mask + (1 - r.mask) * -1.0
    rows = torch.stack([masked[:10], r.filled[:10], r.original[:10]], dim=1).reshape(-1, *shape)
    path = result.path.with_suffix(".png")
    save_png(tile(rows.numpy(), 3), path)  # one row per image: masked, filled, original
    console.print(f"inpainted {len(r.original)} held-out images ({result.region} known, "
                  f"{result.sampler}, {result.steps} steps): PSNR of the filled region "
                  f"{result.psnr_filled_region:.2f} dB, SSIM of the whole images "
                  f"{result.ssim_whole_image:.4f}; grid: {path}")


def register(app: typer.Typer) -> None:
    app.command("sample")(sample)
