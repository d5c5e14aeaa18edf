"""``diffctl study sizes``: parse the study, call :class:`diffctl.study.SizeStudy`, print."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from diffctl_cli.console import make_console

console = make_console()

study_app = typer.Typer(help="Studies over many runs: students of several sizes against a "
                        "teacher.", no_args_is_help=True)


@study_app.command("sizes")
def sizes(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Study config YAML "
                                                "(teacher, sizes, from_data, set, out, "
                                                "workers); options below override it.")
                      ] = None,
    teacher: Annotated[Path | None, typer.Option(help="Run directory of the trained "
                                                 "teacher.")] = None,
    sizes_: Annotated[str | None, typer.Option(
        "--sizes", help="Size factors, comma-separated, e.g. 0.01,0.05,0.1,0.25,0.5,1.0.")
    ] = None,
    from_data: Annotated[bool | None, typer.Option(
        "--from-data/--no-from-data", help="Also train every size on the data alone.")] = None,
    denoiser: Annotated[str | None, typer.Option(
        help="Student denoiser (default: the teacher's, or the student it names).")] = None,
    checkpoint: Annotated[str | None, typer.Option(help="Teacher checkpoint (default best).")
                          ] = None,
    weight: Annotated[float | None, typer.Option(
        help="Share of the teacher term in the students' loss, in [0, 1] (default 1).")
    ] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Override a field of every student: section.field=value (repeatable).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Study folder; the same command again "
                                             "continues a killed study.")] = None,
    workers: Annotated[int | None, typer.Option(help="Students trained in parallel.")] = None,
    threads: Annotated[int | None, typer.Option(help="Torch threads per worker.")] = None,
) -> None:
    """Train one distilled student per size factor (and with --from-data the same sizes on
    the data alone) as a resumable sweep; then `diffctl analyze STUDY`."""
    from diffctl.runs.config import load_yaml
    from diffctl.study.config import parse_sizes, study_config
    from diffctl.study.sizes import SizeStudy
    from diffctl_cli.commands.sweep import run_and_report

    data = load_yaml(config) if config is not None else {}
    given = {"teacher": str(teacher) if teacher is not None else None,
             "sizes": parse_sizes(sizes_) if sizes_ is not None else None,
             "from_data": from_data, "denoiser": denoiser, "checkpoint": checkpoint,
             "weight": weight, "out": str(out) if out is not None else None,
             "workers": workers}
    data.update({k: v for k, v in given.items() if v is not None})
    if set_:
        data["set"] = [*(data.get("set") or []), *set_]
    cfg = study_config(data, config or "study")
    the_study = SizeStudy.create(cfg)
    m = the_study.manifest
    console.print(f"study {the_study.path}: teacher {m['teacher']} ({m['teacher_checkpoint']}), "
                  f"students {m['denoiser']} at {m['size_field']} "
                  f"{', '.join(f'{s:g}' for s in m['sizes'])}"
                  + (", distilled and from data" if m["from_data"] else ", distilled"),
                  highlight=False)
    run_and_report(the_study.sweep, cfg.workers, threads, the_study.run)


def register(app: typer.Typer) -> None:
    app.add_typer(study_app, name="study")
