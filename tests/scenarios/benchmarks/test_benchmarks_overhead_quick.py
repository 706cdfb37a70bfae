"""The trial-overhead benchmark still runs (`--quick`, as a subprocess) and writes a sane RESULTS.md section. No
timing assertions: only that the numbers are there, well-formed and consistent. (The search replay's quick run:
tests/unit/benchmarks/test_search_replay.py.)"""
from __future__ import annotations

import re

import pytest

from bench_utils import run_bench, section


def row(body: str, label: str) -> tuple[float, float]:
    m = re.search(rf"^\| {re.escape(label)} \| (-?[\d.]+)%? \| (-?[\d.]+)%? \|", body, re.M)
    assert m, f"no row {label!r} in:\n{body}"
    return float(m.group(1)), float(m.group(2))


@pytest.mark.slow
def test_trial_overhead_quick(tmp_path):
    results = tmp_path / "RESULTS.md"
    from simmim_ray._compat import trial_path

    run_bench("trial_overhead", results, timeout=900)
    body = section(results.read_text(), f"trial_overhead ({trial_path(say=False)} path) (--quick)")
    assert "Command: `python -m benchmarks.trial_overhead --quick" in body
    wall, loop, fixed = (row(body, k) for k in ("**trial wall time**", "training loop (pre-training + evaluation)",
                                                "**fixed cost = wall - training loop**"))
    for side in (0, 1):  # naive, ours
        assert wall[side] > loop[side] > 0
        assert abs(wall[side] - loop[side] - fixed[side]) < 0.15  # rounding of three 1-decimal numbers
    # the phases partition the trial's wall time
    phases = re.findall(r"^\| (?!\*\*|training loop|share|of which|phase|process)[^|]+ \| (-?[\d.]+) \| (-?[\d.]+) \|",
                        body.split("CPU seconds")[0], re.M)
    assert len(phases) == 10, phases
    for side in (0, 1):
        assert abs(sum(float(p[side]) for p in phases) - wall[side]) < 0.6
    # ours reads the data shared by the driver instead of loading it in every worker
    naive_data, ours_data = row(body, "of which data loading per worker (in setup)")
    assert ours_data < naive_data
    assert re.search(r"naive / ours = [\d.]+x", body)
    assert re.search(r"^\| RayTrainWorker \| [\d.]+ \| [\d.]+ \|", body, re.M)
