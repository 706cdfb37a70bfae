"""The trial-overhead and search-efficiency benchmarks still run (`--quick`, as subprocesses) and write sane
RESULTS.md sections. No timing assertions: only that the numbers are there, well-formed and consistent."""
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

    run_bench("trial_overhead.py", results, timeout=900)
    body = section(results.read_text(), f"trial_overhead ({trial_path(say=False)} path) (--quick)")
    assert "Command: `python benchmarks/trial_overhead.py --quick" in body
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


def test_search_efficiency_quick(tmp_path):
    """No Ray cluster: the searches run in virtual time over traces it measures (seconds at 2 epochs)."""
    results = tmp_path / "RESULTS.md"
    out = run_bench("search_efficiency.py", results, timeout=900)
    body = section(results.read_text(), "search_efficiency (--quick)")
    assert "Command: `python benchmarks/search_efficiency.py --quick" in body
    budget = int(re.search(r"Budget (\d+) trial-epochs", body).group(1))
    rows = re.findall(r"^\| (\d+) \| (tpe\+asha|random\+fifo) \| (\d+) / (\d+) / (\d+) \| (\d+) \| "
                      r"(none|[\d,]+ \([\d.]+\)) \| ([\d,-]+) \| ([\d,-]+) \| ([\d-]+) \|$", body, re.M)
    assert sorted(r[1] for r in rows) == ["random+fifo", "tpe+asha"], body
    for _, method, finished, pruned, cut, feasible, answer, own, match, epochs in rows:
        assert int(finished) >= int(feasible)
        # a confirmed answer needs a trial feasible on validation, and then has a compute to reach it
        assert answer == "none" or (int(feasible) > 0 and own != "-"), (method, answer, feasible, own)
        if answer != "none":
            size, mean = re.match(r"([\d,]+) \(([\d.]+)\)", answer).groups()
            assert float(mean) >= 0.1 and int(size.replace(",", "")) > 0
        assert (match == "-") == (epochs == "-")
        if epochs != "-":
            assert 0 < int(epochs) <= budget
    # every search stopped at its budget of trial-epochs
    spent = [(int(a), int(b)) for a, b in re.findall(r"(\d+) of (\d+) trial-epochs", out)]
    assert len(spent) == 2 and all(a == b == budget for a, b in spent), out
    assert re.search(r"median ([\d.]+x|never|-) \(goal <= 0.5x: (met|NOT met|n/a)\)", body), body
