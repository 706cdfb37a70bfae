"""The data benchmarks still run (`--quick`, as subprocesses) and write their RESULTS.md sections.

data_scaling's quick run is also the memory-flat test: one epoch of a streamed train at N and 10N rows (10N is
~70 MiB of images: a worker that read the whole table would grow by more than that), and `convert` at both sizes;
no role's peak private memory may grow by more than 15%. A ratio of two memory peaks, never a timing.
"""
from __future__ import annotations

import re

import pytest

from bench_utils import run_bench, section


@pytest.mark.slow
def test_data_scaling_quick_memory_is_flat_in_dataset_size(tmp_path):
    results = tmp_path / "RESULTS.md"
    run_bench("data_scaling", results, timeout=900)
    body = section(results.read_text(), "data_scaling (--quick)")
    rows = re.findall(r"^\| ([^|]+) \| ([^|]+) \| (\d+) MiB \| (\d+) MiB \| ([\d.]+)x \|$", body, re.M)
    roles = {(setting.strip(), role.strip()) for setting, role, *_ in rows}
    train = "local Parquet, train"
    assert {(train, "driver"), (train, "train worker 0"), (train, "train worker 1"), (train, "ray data"),
            ("simmim-ray convert", "convert process")} <= roles, body
    for setting, role, small, big, ratio in rows:
        assert int(small) > 0 and float(ratio) == pytest.approx(int(big) / int(small), abs=0.02)
        assert float(ratio) <= 1.15, f"{setting} / {role}: {small} MiB -> {big} MiB"
    assert "goal <= 1.15x: met" in body


def test_data_throughput_quick(tmp_path):
    results = tmp_path / "RESULTS.md"
    run_bench("data_throughput", results, timeout=600)
    body = section(results.read_text(), "data_throughput (--quick)")
    rates = dict(re.findall(r"^\| ([^|]+?) \| ([\d.]+) \([\d-]+\) \| [\d.]+x \|$", body, re.M))
    assert {"torchvision (PIL), the peer", "ours (data/decode.py)"} <= set(rates), body
    assert all(float(r) > 0 for r in rates.values())
    assert re.search(r"Ours / the peer: [\d.]+x per core", body)
    cores = re.findall(r"^\| (A100|H100 SXM) \([^)]*\) \| [\d,]+ \| (\d+) \| (\d+) \|$", body, re.M)
    assert len(cores) == 2 and all(int(ours) >= 1 for _, ours, _ in cores), body
