"""The CLI's metric table never shows a value below its floor's noise as better than real."""

from __future__ import annotations

from rich.console import Console

from diffctl_cli.tables import metrics_table


def render(values: dict, floors: dict) -> str:
    console = Console(width=160, record=True)
    console.print(metrics_table("t", values, floors))
    return console.export_text()


def test_values_at_or_beyond_the_floor_read_at_floor() -> None:
    floors = {"mmd-rbf": {"mean": -0.0004, "p95": 0.0005, "zero_centred": True},
              "moons-overall": {"mean": 0.34, "p95": 0.345},
              "mode-coverage": {"mean": 1.0, "p95": 1.0}}
    text = render({"mmd-rbf": -0.0007, "moons-overall": 0.374, "mode-coverage": 1.0}, floors)
    rows = {line.split("│")[1].strip(): line for line in text.splitlines() if "│" in line}
    assert "at floor" in rows["mmd-rbf"] and "-1.4" not in rows["mmd-rbf"]
    assert "1.10" in rows["moons-overall"]
    assert "at floor" in rows["mode-coverage"]
    worse = render({"mmd-rbf": 0.002, "mode-coverage": 0.75}, floors)
    assert "4.00 x p95" in worse and "0.75" in worse and "at floor" not in worse


def test_secondary_keys_show_their_floor_but_no_verdict() -> None:
    floors = {"mmd_num_scales": {"mean": 8.0, "p95": 8.0},
              "c2st_std": {"mean": 0.008, "p95": 0.011}}
    text = render({"mmd_num_scales": 8.0, "c2st_std": 0.003}, floors)
    rows = {line.split("│")[1].strip(): line for line in text.splitlines() if "│" in line}
    for name in floors:
        cells = [c.strip() for c in rows[name].split("│")]
        assert cells[3] and cells[5] == "", rows[name]  # floor mean shown, no ratio
        assert "at floor" not in rows[name]
