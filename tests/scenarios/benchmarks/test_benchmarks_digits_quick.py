"""benchmarks/studies/digits_frontier.py --quick as CI runs it (a subprocess): the frontier and seed tables it writes
(the arithmetic behind them: tests/unit/benchmarks/test_benchmarks_digits.py)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from bench_utils import ROOT


def test_quick_run_writes_frontier_and_seed_tables(tmp_path):
    store, doc = tmp_path / "store.json", tmp_path / "numbers.md"
    doc.write_text("# Digits numbers\n\nanalysis kept\n")
    proc = subprocess.run([sys.executable, "-m", "benchmarks.studies.digits_frontier", "--quick",
                           "--json", str(store), "--out", str(doc)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = doc.read_text()
    assert "analysis kept" in text  # only the marked sections are replaced
    records = json.loads(store.read_text())
    kinds = {r["kind"] for r in records}
    assert kinds == {"logreg", "simmim", "scratch", "timing"}
    timing = next(r for r in records if r["kind"] == "timing")
    assert all(timing[k] > 0 for k in ("epoch_s", "proxy_s", "eval_s", "finetune_epoch_s"))
    records = [r for r in records if r["kind"] != "timing"]
    # every arm is measured on the same labelled images and the same validation / test splits
    assert len({(r["n_labeled"], r["n_pool"], r["n_val"], r["n_test"]) for r in records}) == 1
    cells = {(r["pretrain_seed"], r["finetune_seed"]) for r in records if r["kind"] == "simmim"}
    assert cells == {(0, 0), (0, 1), (1, 0), (1, 1)}
    for r in records:
        assert 0 <= r["val"] <= 1 and 0 <= r["test"] <= 1
    frontier = re.search(r"<!-- digits_frontier:frontier -->(.*)<!-- /digits_frontier:frontier -->", text, re.S)
    assert frontier, text
    body = frontier.group(1)
    assert re.search(r"^\| pixel logistic regression .*\| [\d.]+ \| [\d.]+ \| [\d.]+-[\d.]+ \|", body, re.M)
    sim = re.search(r"^\| `quick` SimMIM \| ([\d,]+) \| 2 / 2 \| [\d.]+ ± [\d.]+ \| [\d.]+ ± [\d.]+ \| "
                    r"[\d.]+-[\d.]+ \| 2 \| \d+ \| [\d.]+ \| \d+ \| ([\d.]+) \|", body, re.M)
    assert sim and float(sim.group(2)) > 0, body
    assert re.search(r"^\| `quick` from scratch \| ", body, re.M)
    seeds = re.search(r"<!-- digits_frontier:seeds -->(.*)<!-- /digits_frontier:seeds -->", text, re.S).group(1)
    assert re.search(r"^\| `quick` \| 10% \| 2 x 2 \| test \| [\d.]+ \| [\d.]+ \| [\d.]+ \|", seeds, re.M), seeds
