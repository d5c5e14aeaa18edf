"""``diffctl run`` and ``diffctl train``: parse the arguments, call :class:`diffctl.runs.Run`,
print. Heavy imports (torch, the run machinery, matplotlib) happen inside the commands, so
``diffctl --help`` stays light."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from diffctl_cli.console import make_console

console = make_console()

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Run config YAML.")]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", help="Override a config field: section.field=value (repeatable).")]
DatasetOpt = Annotated[str | None, typer.Option(help="Dataset name.")]
DenoiserOpt = Annotated[str | None, typer.Option(help="Denoiser name.")]
SchedulerOpt = Annotated[str | None, typer.Option(help="Noise schedule name.")]
OutOpt = Annotated[str | None, typer.Option(help="Run directory (default runs/<time>-...).")]
SeedOpt = Annotated[int | None, typer.Option(help="The run's seed.")]
ResumeOpt = Annotated[Path | None, typer.Option(
    help="Continue the run in this directory (from its newest intact checkpoint).")]
CheckpointOpt = Annotated[str | None, typer.Option(
    help="With --resume: continue from this checkpoint in a new run directory (--out, "
    "default <run>-from-<checkpoint>); the original run is left as it is.")]
EpochsOpt = Annotated[int | None, typer.Option(
    help="With --resume: train to this many epochs in all (extends a finished run).")]
LoggerOpt = Annotated[list[str] | None, typer.Option(
    "--logger", help="Also log to this logger (csv, tensorboard or a plugin's; repeatable); "
    "jsonl is always on.")]
StrictOpt = Annotated[bool, typer.Option(
    "--strict", help="With --resume: refuse a damaged newest checkpoint instead of falling "
    "back to the newest intact one.")]


def run(
    config: ConfigOpt = None,
    dataset: DatasetOpt = None,
    denoiser: DenoiserOpt = None,
    scheduler: SchedulerOpt = None,
    sampler: Annotated[str | None, typer.Option(help="Sampler name.")] = None,
    metric: Annotated[list[str] | None, typer.Option(help="Metric (repeatable).")] = None,
    logger: LoggerOpt = None,
    set_: SetOpt = None,
    out: OutOpt = None,
    seed: SeedOpt = None,
    steps: Annotated[int | None, typer.Option(help="Sampler steps.")] = None,
    resume: ResumeOpt = None,
    checkpoint: CheckpointOpt = None,
    epochs: EpochsOpt = None,
    strict: StrictOpt = False,
    plots: Annotated[bool, typer.Option(help="Write PNG plots.")] = True,
) -> None:
    """Train, sample and evaluate one run (default: two-moons with its default denoiser).

    Defaults follow the components you name: --denoiser dit alone trains on the bundled
    digits with the DiT's CPU-sized recipe; --dataset alone picks a fitting denoiser."""
    choices = dict(config=config, dataset=dataset, denoiser=denoiser, scheduler=scheduler,
                   sampler=sampler, metric=metric, logger=logger, set=set_, seed=seed,
                   steps=steps)
    _execute(choices, out, resume, checkpoint, epochs, plots, evaluate=True, strict=strict)


def train(
    config: ConfigOpt = None,
    dataset: DatasetOpt = None,
    denoiser: DenoiserOpt = None,
    scheduler: SchedulerOpt = None,
    logger: LoggerOpt = None,
    set_: SetOpt = None,
    out: OutOpt = None,
    seed: SeedOpt = None,
    resume: ResumeOpt = None,
    checkpoint: CheckpointOpt = None,
    epochs: EpochsOpt = None,
    strict: StrictOpt = False,
) -> None:
    """Train only: checkpoints and metrics.jsonl, no final sampling."""
    choices = dict(config=config, dataset=dataset, denoiser=denoiser, scheduler=scheduler,
                   logger=logger, set=set_, seed=seed)
    _execute(choices, out, resume, checkpoint, epochs, True, evaluate=False, strict=strict)


def _execute(choices: dict, out_text: str | None, resume: Path | None,
             checkpoint: str | None, epochs: int | None, plots: bool, evaluate: bool,
             strict: bool = False) -> None:
    from diffctl.errors import UsageError
    from diffctl.runs import Run
    from diffctl.training.distributed import dist_info
    from diffctl_cli.progress import training_progress

    if out_text is not None and not out_text.strip():
        raise UsageError("--out is empty; name a directory for the run")
    out = Path(out_text) if out_text is not None else None

    if resume is not None:
        given = [f"--{k}" for k, v in choices.items() if v not in (None, [], ())]
        if out is not None and checkpoint is None:
            given.append("--out")
        if given:
            raise UsageError(f"--resume continues a run with its own config; it does not take "
                             f"{', '.join(given)} (only --epochs, --checkpoint and, with "
                             "--checkpoint, --out)")
        the_run = Run.open(resume)
        if checkpoint is not None:
            the_run = the_run.fork(checkpoint, out)
            console.print(f"continuing from {checkpoint} in the new run {the_run.path}")
    else:
        if checkpoint is not None or epochs is not None or strict:
            raise UsageError("--checkpoint, --epochs and --strict go with --resume")
        the_run = Run.create(_config(choices), out)
    try:
        with training_progress() as on_step:
            if not dist_info().is_main:  # torchrun: rank 0 reports, plots and shows progress
                on_step = None
            if resume is not None:
                the_run.resume(epochs=epochs, strict=strict, on_step=on_step)
            else:
                the_run.train(on_step=on_step, evaluate_after=evaluate)
    except KeyboardInterrupt:
        from diffctl.errors import Interrupted

        raise Interrupted(_interrupted(the_run)) from None
    if not dist_info().is_main:
        if evaluate:
            the_run.finalize()
        return
    if evaluate:
        from diffctl_cli.progress import sampling

        with sampling() as (on_progress, on_stage):
            report = the_run.finalize(on_progress=on_progress, on_stage=on_stage)
        _print_report(report)
    else:
        from diffctl_cli.tables import train_line

        console.print(train_line(str(the_run.path), the_run.train_summary()))
    if plots:
        from diffctl_cli.plots import plot_run

        written = plot_run(the_run.path)
        console.print("plots: " + ", ".join(p.name for p in written))


def _interrupted(the_run) -> str:
    """Where an interrupted training stopped and the command that continues it."""
    from diffctl.training.checkpoint import (
        CheckpointError,
        list_partial_checkpoints,
        read_state,
        resolve_checkpoint,
    )

    found = []  # (name, state) of the epoch checkpoint 'last' and the newest partial one
    try:
        last = resolve_checkpoint(the_run.dir.checkpoints, "last")
        found.append((last.name, read_state(last)))
    except CheckpointError:
        pass
    for partial in reversed(list_partial_checkpoints(the_run.dir.checkpoints)):
        try:
            found.append((f"partial/{partial.name}", read_state(partial)))
            break
        except CheckpointError:
            continue
    if not found:
        return "interrupted before the first checkpoint; nothing to resume from"
    name, state = max(found, key=lambda item: item[1]["step"])
    return (f"interrupted; the last checkpoint is {name} (epoch {state['epoch']}, step "
            f"{state['step']}); continue with: diffctl run --resume {the_run.path}")


def _config(choices: dict):
    """The resolved config of a new run from the command line's choices."""
    from diffctl.runs.config import compose, load_yaml

    data = load_yaml(choices["config"]) if choices.get("config") else None
    overrides = list(choices.get("set") or [])
    if choices.get("logger"):
        overrides.insert(0, f"train.loggers=[{', '.join(choices['logger'])}]")
    return compose(data, dataset=choices.get("dataset"), denoiser=choices.get("denoiser"),
                   scheduler=choices.get("scheduler"), sampler=choices.get("sampler"),
                   metrics=choices.get("metric"), seed=choices.get("seed"),
                   steps=choices.get("steps"), overrides=overrides)


def _print_report(report: dict) -> None:
    from diffctl_cli.tables import report_tables, train_line

    console.print(train_line(report["run"], report["train"]))
    table, lines = report_tables(report)
    if table is not None:
        console.print(table)
    for line in lines:
        console.print(line, highlight=False)


def register(app: typer.Typer) -> None:
    """Add the run commands to the ``diffctl`` app."""
    app.command("run")(run)
    app.command("train")(train)
