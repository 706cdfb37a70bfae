"""The benchmarks still run (`--quick`, as subprocesses) and write their RESULTS.md sections. No timing
assertions: only that the numbers are there and well-formed, and that the section writer keeps other sections."""
from __future__ import annotations

import re

import pytest

from bench_utils import run_bench, section
from benchmarks.common import replace_section, write_result


def test_step_throughput_quick(tmp_path):
    pytest.importorskip("transformers", reason="the peer comes from the `bench` extra")
    results = tmp_path / "RESULTS.md"
    out = run_bench("step_throughput", results, timeout=600)
    assert re.search(r"\(a\) ours [\d.]+ img/s, peer [\d.]+ img/s, ratio [\d.]+x", out), out
    body = section(results.read_text(), "step_throughput (--quick)")
    assert "Command: `python -m benchmarks.step_throughput --quick" in body
    assert re.search(r"Machine limit, measured in this run .*torch.mm \(BLAS\) [\d.]+ [GMT]FLOP/s", body)
    for case in ("(a)", "(b)"):
        assert f"### {case}" in body
    ratios = [float(x) for x in re.findall(r"ours / peer = ([\d.]+)x", body)]
    assert len(ratios) == 2 and all(r > 0 for r in ratios)
    # each side's FLOPs come from the flop counter and must include attention: equal shapes, equal FLOPs
    rows = re.findall(r"^\| (ours|peer) \| [\d.]+ \([\d-]+\) \| ([\d.]+ [KMGT]?FLOP) \|", body, re.M)
    assert len(rows) == 4, body
    assert rows[0][1] == rows[1][1] and rows[2][1] == rows[3][1]


@pytest.mark.slow
def test_scaling_quick(tmp_path):
    results = tmp_path / "RESULTS.md"
    run_bench("scaling", results, timeout=600)
    body = section(results.read_text(), "scaling (--quick)")
    for setup in ("1 worker x 1 thread", "2 workers x 1 thread"):
        m = re.search(rf"^\| {setup} \| (\d+) \| ([\d.]+)x \|", body, re.M)
        assert m and int(m.group(1)) > 0, body
    assert "two workers give" in body
