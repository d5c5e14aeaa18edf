"""One self-contained HTML page of a run or a study folder (``diffctl report``).

The page needs nothing beside itself: every picture is inlined as a base64 PNG, the styles
sit in the page. It is built from string templates; every piece of text taken from the run
(names, config, JSON, captions) goes through :func:`html.escape`. What it reads are the run
directory's own files (names from :mod:`diffctl.runs.directory`), so a page can be written
for any finished or half-finished run without torch.

A run's page: configuration summary, training, final metrics with their real-vs-real floors
(and reconstruction metrics, metric metadata), the checkpoint records written during
training, every PNG of the run directory, the sampler comparisons, every ``diffctl eval``
folder (settings, rows with floors, failures, pictures) and the full config.yaml. A study (a
folder with ``study.json`` or ``sweep.json``, or any folder holding run directories): its
JSON and PNG files outside the runs, a table of every run's final metrics, then one section
per run.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any

from diffctl.errors import UsageError
from diffctl.runs import directory as files

#: Files that mark a folder as a study (diffctl study / diffctl sweep manifests).
STUDY_MANIFESTS = ("study.json", "sweep.json")
#: JSON files larger than this are shown cut, with a note.
JSON_LIMIT = 200_000

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1200px;
color:#222;padding:0 1rem;line-height:1.4}
h1{font-size:1.6rem}h2{border-bottom:2px solid #4c72b0;padding-bottom:.2rem;margin-top:2.5rem}
h3{margin-top:1.8rem;color:#333}h4{margin:1.2rem 0 .4rem}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.9rem}
th,td{border:1px solid #ddd;padding:.25rem .6rem;text-align:right}
th{background:#f3f5f9}td.name,th.name{text-align:left}
figure{display:inline-block;margin:.5rem 1rem 1rem 0;vertical-align:top}
figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:.8rem;color:#555}
pre{background:#f7f7f7;padding:.6rem;overflow:auto;font-size:.8rem;max-height:30rem}
.meta{color:#666;font-size:.85rem}.bad{color:#b00}nav a{margin-right:1rem}
"""


def fmt(value: Any) -> str:
    """Numbers in 4 significant digits; other values as text."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, int | float):
        return f"{value:.4g}"
    return str(value)


def table(header: list[str], rows: list[list[Any]], first_is_name: bool = True) -> str:
    """An HTML table; every cell escaped, numbers formatted."""
    def cell(tag: str, i: int, value: Any) -> str:
        cls = ' class="name"' if i == 0 and first_is_name else ""
        return f"<{tag}{cls}>{escape(fmt(value))}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def figure(path: Path, caption: str) -> str:
    """A PNG inlined as base64, with its caption (the file's path within the report)."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{escape(caption)}" '
            f'data-file="{escape(caption)}"><figcaption>{escape(caption)}</figcaption>'
            "</figure>")


def pre(text: str, summary: str, open_: bool = False) -> str:
    return (f"<details{' open' if open_ else ''}><summary>{escape(summary)}</summary>"
            f"<pre>{escape(text)}</pre></details>")


def json_block(path: Path, caption: str) -> str:
    """A JSON file pretty-printed in a collapsible block (cut beyond :data:`JSON_LIMIT`)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        text = json.dumps(json.loads(text), indent=1)
    except json.JSONDecodeError:
        caption += " (not valid JSON)"
    if len(text) > JSON_LIMIT:
        text = text[:JSON_LIMIT] + f"\n... cut at {JSON_LIMIT} characters"
    return pre(text, caption)


# -- one run ---------------------------------------------------------------------------------
class _Pictures:
    """The PNGs of a folder not yet placed on the page, so that none is left out."""

    def __init__(self, root: Path, base: Path):
        self.base = base
        self.left = {p for p in root.rglob("*.png")
                     if files.CHECKPOINTS not in p.relative_to(root).parts}

    def take(self, paths: list[Path]) -> str:
        out = []
        for path in sorted(paths):
            if path in self.left:
                self.left.discard(path)
                out.append(figure(path, str(path.relative_to(self.base))))
        return "".join(out)


def floor_cells(value: float, floor: dict[str, Any] | None) -> list[Any]:
    """Floor mean, p95 and value / floor (to the p95 for zero-centred estimators)."""
    if not floor:
        return ["", "", ""]
    reference = floor.get("p95") if floor.get("zero_centred") else floor.get("mean")
    ratio = value / reference if isinstance(reference, int | float) and reference > 0 else None
    label = "" if ratio is None else f"{ratio:.3g}" + (" x p95" if floor.get("zero_centred")
                                                       else "")
    return [floor.get("mean"), floor.get("p95"), label]


def _config_summary(config: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for section in ("dataset", "denoiser", "scheduler", "sampler"):
        part = config.get(section) or {}
        rows.append([section, part.get("name", "")])
    sample, train = config.get("sample") or {}, config.get("train") or {}
    rows += [["sampler steps", sample.get("num_steps")], ["samples", sample.get("num_samples")],
             ["epochs", train.get("epochs")], ["batch size", train.get("batch_size")],
             ["seed", config.get("seed")],
             ["metrics", ", ".join((config.get("eval") or {}).get("metrics") or [])]]
    return rows


def _anchor(path: Path) -> str:
    return "run-" + "".join(c if c.isalnum() else "-" for c in str(path))


def run_section(run: Path, base: Path, level: int = 2) -> str:
    """The HTML of one run directory (headings from ``level``)."""
    import yaml

    h, sub, subsub = f"h{level}", f"h{level + 1}", f"h{level + 2}"
    directory = files.RunDirectory(run)
    config_text = directory.read_config_text()
    config = yaml.safe_load(config_text) or {}
    pictures = _Pictures(run, base)
    name = str(run.relative_to(base)) if run != base else run.name
    parts = [f'<section id="{escape(_anchor(run.relative_to(base)))}">',
             f"<{h}>{escape(name)}</{h}>",
             f'<p class="meta">{escape(str(run.resolve()))}</p>',
             table(["setting", "value"], _config_summary(config))]
    report = directory.report()
    if report:
        train = report.get("train") or {}
        keys = [k for k in ("step", "epoch", "train_seconds", "device", "parameters",
                            "stopped_early", "stop_reason") if train.get(k) is not None]
        parts += [f"<{sub}>Training</{sub}>",
                  table(["quantity", "value"], [[k, train[k]] for k in keys])]
        parts.append(_metrics(report.get("eval") or {}, sub))
    else:
        parts.append(f"<p>No final report ({files.REPORT}): the run has not been "
                     "finalized.</p>")
    history = directory.history()
    if history:
        parts += [f"<{sub}>Checkpoint records during training ({files.METRICS_LOG})</{sub}>",
                  _records(history)]
    top = [p for p in pictures.left if p.parent == run]
    if top:
        parts += [f"<{sub}>Plots</{sub}>", pictures.take(top)]
    parts.append(_comparisons(run, pictures, sub))
    samples_dir = run / files.SAMPLES_DIR
    rest = [p for p in pictures.left if samples_dir in p.parents]
    if rest:
        parts += [f"<{sub}>Sample pictures ({files.SAMPLES_DIR}/)</{sub}>", pictures.take(rest)]
    for folder in directory.eval_dirs():
        parts.append(_eval_section(folder, pictures, sub, subsub))
    if pictures.left:
        parts += [f"<{sub}>Other pictures</{sub}>", pictures.take(sorted(pictures.left))]
    others = sorted(p for p in run.glob("*.json") if p.name not in (files.REPORT, files.LOSSES))
    for path in others:
        parts.append(json_block(path, str(path.relative_to(base))))
    parts += [pre(config_text, f"{files.CONFIG} (the resolved config; repeats the run)"),
              "</section>"]
    return "".join(parts)


def _metrics(ev: dict[str, Any], h: str) -> str:
    if not ev:
        return ""
    floors = ev.get("floors") or {}
    rows = [[name, value, *floor_cells(value, floors.get(name))]
            for name, value in (ev.get("metrics") or {}).items()]
    rec = ev.get("reconstruction") or {}
    for name, value in (rec.get("metrics") or {}).items():
        rows.append([f"{name} (x0 from t={rec.get('t')})", value, "", "", ""])
    seconds = ev.get("sample_seconds")
    title = f"Metrics on {ev.get('num_samples')} samples" + (
        f" (sampling {seconds:.1f} s)" if isinstance(seconds, int | float) else "")
    out = [f"<{h}>{escape(title)}</{h}>",
           table(["metric", "value", "floor mean", "floor p95", "value / floor"], rows),
           '<p class="meta">floor: the same metric between two independent real samples of '
           'the same size; value / floor near 1 reads as indistinguishable from real data.</p>']
    metadata = {**(ev.get("metric_metadata") or {}), **(rec.get("metric_metadata") or {})}
    if metadata:
        out.append(table(["metric", "measured with"], [
            [name, ", ".join(f"{k} {fmt(v)}" for k, v in md.items()
                             if k in ("feature_extractor", "weights_sha256", "num_generated",
                                      "num_real", "resize", "device", "reference"))]
            for name, md in metadata.items()]))
    return "".join(out)


def _records(records: list[dict[str, Any]]) -> str:
    """A table of per-checkpoint records: checkpoint, epoch, step and every number."""
    skip = {"metric_metadata", "rewritten", "error"}
    keys = [k for k in dict.fromkeys(k for r in records for k in r)
            if k not in skip and any(isinstance(r.get(k), int | float | str) for r in records)]
    return table(keys, [[r.get(k, "") for k in keys] for r in records])


def _comparisons(run: Path, pictures: _Pictures, h: str) -> str:
    found = sorted((run / files.SAMPLES_DIR).glob("comparison-*.json"))
    if not found:
        return ""
    out = [f"<{h}>Sampler comparisons</{h}>"]
    for path in found:
        data = files.read_json(path, "sampler comparison")
        metric = data.get("metric") or "metric"
        out.append(f"<p>{escape(path.name)}: {escape(str(data.get('checkpoint')))}, "
                   f"{escape(fmt(data.get('num_samples')))} samples per sampler from the same "
                   f"x_T (seed {escape(fmt(data.get('seed')))})</p>")
        rows = [[r.get("label"), r.get("steps"), r.get("seconds"), r.get("value")]
                for r in data.get("rows") or []]
        floor = data.get("floor")
        if floor:
            rows.append(["real-vs-real floor (mean)", "", "", floor.get("mean")])
        out.append(table(["sampler", "steps", "seconds", metric], rows))
        out.append(pictures.take([path.with_suffix(".png")]))
    return "".join(out)


def _eval_section(folder: Path, pictures: _Pictures, h: str, h2: str) -> str:
    settings_file = folder / files.EVAL_SETTINGS
    settings = files.read_json(settings_file, "eval settings") if settings_file.exists() else {}
    rows = files.read_jsonl(folder / files.EVAL_ROWS)
    floors_file = folder / files.EVAL_FLOORS
    floors = (files.read_json(floors_file, "floors").get("floors") or {}) \
        if floors_file.exists() else {}
    metrics = settings.get("metrics") or sorted({k for r in rows for k in r} -
                                                {"checkpoint", "epoch", "step", "seconds",
                                                 "metric_metadata"})
    out = [f"<{h}>Evaluation {escape(folder.name)}</{h}>",
           f'<p class="meta">{escape(fmt(len(rows)))} checkpoints, '
           f"{escape(fmt(settings.get('num_samples')))} samples each, "
           f"{escape(fmt(settings.get('steps')))} {escape(str(settings.get('sampler', '')))} "
           f"steps, seed {escape(fmt(settings.get('seed')))}, "
           f"{escape(fmt(settings.get('seconds')))} s</p>"]
    body = [[r.get("checkpoint"), r.get("epoch"), *(r.get(m, "") for m in metrics)]
            for r in rows]
    for stat in ("mean", "p95"):
        if any(m in floors for m in metrics):
            body.append([f"floor {stat}", "", *((floors.get(m) or {}).get(stat, "")
                                                for m in metrics)])
    out.append(table(["checkpoint", "epoch", *metrics], body))
    for failure in settings.get("failures") or []:
        out.append(f'<p class="bad">failed {escape(str(failure.get("checkpoint")))}: '
                   f'{escape(str(failure.get("error")))}</p>')
    mine = [p for p in pictures.left if folder in p.parents]
    if mine:
        out += [f"<{h2}>Pictures</{h2}>", pictures.take(mine)]
    return "".join(out)


# -- a study ---------------------------------------------------------------------------------
def find_runs(folder: Path) -> list[Path]:
    """Run directories under ``folder`` (not the folder itself), in path order."""
    found = []
    for config in sorted(folder.rglob(files.CONFIG)):
        run = config.parent
        parts = run.relative_to(folder).parts
        if run != folder and files.CHECKPOINTS not in parts and \
                not any((folder.joinpath(*parts[:i]) / files.CONFIG).is_file()
                        for i in range(1, len(parts))):
            found.append(run)
    return found


def _inside(path: Path, runs: list[Path]) -> bool:
    return any(run in path.parents for run in runs)


def study_page(folder: Path) -> str:
    runs = find_runs(folder)
    if not runs and not any((folder / m).is_file() for m in STUDY_MANIFESTS):
        raise UsageError(f"{folder} is neither a run directory (no {files.CONFIG}) nor a "
                         f"study folder (no {' or '.join(STUDY_MANIFESTS)}, no runs below)")
    summary_json = sorted(p for p in folder.rglob("*.json") if not _inside(p, runs))
    summary_png = sorted(p for p in folder.rglob("*.png") if not _inside(p, runs))
    nav = "".join(f'<a href="#{escape(_anchor(r.relative_to(folder)))}">'
                  f"{escape(str(r.relative_to(folder)))}</a>" for r in runs)
    parts = [f"<h1>diffctl study report: {escape(folder.name)}</h1>", _meta(folder),
             f"<nav>{nav}</nav>" if nav else "", "<h2>Summary</h2>", _study_table(folder, runs)]
    parts += [json_block(p, str(p.relative_to(folder))) for p in summary_json]
    parts += [figure(p, str(p.relative_to(folder))) for p in summary_png]
    parts += [run_section(run, folder) for run in runs]
    return _page(f"diffctl study: {folder.name}", "".join(parts))


def _study_table(folder: Path, runs: list[Path]) -> str:
    """One row per run: epochs, training time and each final metric (value / floor)."""
    reports = {run: files.RunDirectory(run).report() or {} for run in runs}
    metrics = list(dict.fromkeys(m for r in reports.values()
                                 for m in ((r.get("eval") or {}).get("metrics") or {})))
    rows = []
    for run, report in reports.items():
        ev, train = report.get("eval") or {}, report.get("train") or {}
        values, floors = ev.get("metrics") or {}, ev.get("floors") or {}
        cells = []
        for m in metrics:
            if m not in values:
                cells.append("")
                continue
            ratio = floor_cells(values[m], floors.get(m))[2]
            cells.append(fmt(values[m]) + (f" ({ratio} of floor)" if ratio else ""))
        rows.append([str(run.relative_to(folder)), train.get("epoch", ""),
                     train.get("train_seconds", ""), *cells])
    return table(["run", "epochs", "train seconds", *metrics], rows) if runs else \
        "<p>No run directories yet.</p>"


# -- the page --------------------------------------------------------------------------------
def _meta(path: Path) -> str:
    return (f'<p class="meta">{escape(str(path.resolve()))}; written '
            f"{escape(datetime.now().strftime('%Y-%m-%d %H:%M'))} by diffctl report</p>")


def _page(title: str, body: str) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
            f"<body>{body}</body></html>\n")


def run_page(run: Path) -> str:
    body = f"<h1>diffctl run report: {escape(run.name)}</h1>{_meta(run)}" + \
        run_section(run, run)
    return _page(f"diffctl run: {run.name}", body)


def write_report(target: Path, out: Path | None = None) -> Path:
    """Write the page of a run directory or a study folder; default
    ``<target>/report.html``. Returns the path written."""
    if not target.is_dir():
        raise UsageError(f"not a folder: {target}")
    run = files.RunDirectory(target)
    text = run_page(target) if run.exists() else study_page(target)
    path = out or target / files.REPORT_HTML
    path.parent.mkdir(parents=True, exist_ok=True)
    files.write_atomic(path, text)
    return path
