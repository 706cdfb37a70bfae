"""benchmarks/studies/proxy_correlation.py --quick still runs end to end (as a subprocess) and writes well-formed
results: every trial has the per-epoch proxies and a final accuracy, every candidate row its correlation, and the
markdown block replaces itself instead of piling up. No timing assertions."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import repo_root

ROOT = repo_root.REPO_PATH


def test_proxy_correlation_quick(tmp_path):
    out, md = tmp_path / "proxy.json", tmp_path / "proxy.md"
    md.write_text("# Proxy metrics\n\nHand-written recommendation.\n")
    cmd = [sys.executable, "-m", "benchmarks.studies.proxy_correlation", "--quick", "--out", str(out),
           "--md", str(md)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    res = json.loads(out.read_text())
    s = res["settings"]
    assert s["quick"] and s["trials"] == len(res["trials"]) == 3
    points = [t["point"] for t in res["trials"]]
    assert len({json.dumps(p, sort_keys=True) for p in points}) == 3, "sampling must give distinct points"
    for t in res["trials"]:
        assert 0.0 <= t["final"] <= 1.0 and t["params_count"] > 0
        assert [e["epoch"] for e in t["epochs"]] == list(range(1, s["epochs"] + 1))
        for e in t["epochs"]:
            assert 0.0 <= e["knn"] <= 1.0 and math.isfinite(e["loss_masked"]) and e["loss_masked"] > 0
        for g in s["grace"]:  # short fine-tunes exist at the grace epochs and only there
            for k in s["ft_lengths"]:
                assert 0.0 <= t["epochs"][g - 1][f"ft{k}"] <= 1.0
        assert all(f"ft{s['ft_lengths'][0]}" not in e for e in t["epochs"] if e["epoch"] not in s["grace"])

    rows = {(r["metric"], r["epoch"]): r for r in res["analysis"]["rows"]}
    assert rows[("final", s["epochs"])]["spearman"] == 1.0  # the reference correlates perfectly with itself
    for g in s["grace"]:
        for m in ("knn", "neg_loss_masked", f"ft{s['ft_lengths'][0]}"):
            r = rows[(m, g)]
            assert math.isnan(r["spearman"]) or -1.0 <= r["spearman"] <= 1.0
            assert 0.0 <= r["top_third"] <= 1.0
            assert 0.0 < r["asha"]["epochs_frac"] <= 1.0 and 0.0 <= r["asha"]["p_best"] <= 1.0

    text = md.read_text()
    assert "Hand-written recommendation." in text and "| knn | 1 |" in text
    # a second write replaces the generated block rather than appending another one
    from benchmarks.studies.proxy_correlation import write_md

    write_md(str(md), "replaced body\n")
    text = md.read_text()
    assert text.count("proxy_correlation:main:begin") == 1 and "replaced body" in text and "| knn | 1 |" not in text
    assert "Hand-written recommendation." in text
