"""benchmarks/table_stats.py: the proxy's rank correlation with accuracy and its AUC for feasibility at each rung,
from a hand-made table, and the page it writes."""
from __future__ import annotations

import json
import math

import pytest

from benchmarks import replay_table as rt
from benchmarks import table_stats as ts

EPOCHS = 4


def make_table() -> dict:
    """5 configurations, mean validation accuracy rising with width; the proxy ranks them backwards at epochs 1-2
    and rightly at 3-4; size ranks them rightly except that the two largest tie."""
    configs = {}
    for i, (w, params) in enumerate([(8, 100), (16, 200), (24, 300), (32, 400), (40, 400)]):
        acc = 0.80 + 0.04 * i  # 0.80 ... 0.96; feasible (>= 0.9, on test) from i = 3
        proxies = [1 - acc, 1 - acc, acc, acc]
        point = {"model.embed_dim": w}
        configs[json.dumps(point)] = {
            "point": point, "params": params, "flops": 10 * params,
            "epochs": [{"proxy_knn": p, "loss": 1.0, "cpu_s": 1.0} for p in proxies],
            "finetune": [{"seed": s, "val_accuracy": acc, "test_accuracy": acc, "cpu_s": 1.0} for s in (1, 2, 3)]}
    return {"space": "hand", "target_accuracy": 0.9, "size_metric": "params", "trials": 2, "grace_period": 2,
            "epochs": EPOCHS, "keys": ["model.embed_dim"], "configs": configs}


def test_spearman_ranks_with_ties_averaged():
    assert ts.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert ts.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ranks [1, 2.5, 2.5, 4] against [1, 2, 3, 4]: Pearson of the ranks
    assert ts.spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486832980505138)
    assert math.isnan(ts.spearman([1, 1, 1], [1, 2, 3])) and math.isnan(ts.spearman([1, 2], [1, 2]))


def test_correlation_and_auc_at_each_rung_and_for_size():
    table = rt.from_dict(make_table())
    rows = ts.correlations(table, rungs=(2, 3, 5))  # epoch 5 is past the table's 4 epochs
    by = {r.signal: r for r in rows}
    assert [r.epoch for r in rows] == [2, 3, None]
    assert by["proxy_knn at epoch 2"].spearman == pytest.approx(-1.0) and by["proxy_knn at epoch 2"].auc == 0.0
    assert by["proxy_knn at epoch 3"].spearman == pytest.approx(1.0) and by["proxy_knn at epoch 3"].auc == 1.0
    size = by["size (params)"]
    assert 0.9 < size.spearman < 1.0 and size.auc == pytest.approx(1.0)  # the tie costs rank correlation only


def test_auc_needs_both_sides_of_the_target():
    data = make_table()
    data["target_accuracy"] = 0.99
    rows = ts.correlations(rt.from_dict(data), rungs=(3,))
    assert all(math.isnan(r.auc) for r in rows) and not math.isnan(rows[0].spearman)
    assert "| proxy_knn at epoch 3 | 1.00 | n/a |" in ts.markdown(rt.from_dict(data), rows, "cmd")


def test_main_writes_the_page(tmp_path):
    path, md = tmp_path / "t.json", tmp_path / "proxy.md"
    path.write_text(json.dumps(make_table()))
    assert ts.main(["--table", str(path), "--md", str(md), "--no-write"]) == 0 and not md.exists()
    assert ts.main(["--table", str(path), "--md", str(md)]) == 0
    text = md.read_text()
    assert text.startswith("# Proxy metrics for early stopping (ASHA)")
    assert "Command: `python" in text and "| proxy_knn at epoch 2 | -1.00 | 0.00 |" in text
    assert "| proxy_knn at epoch 4 | 1.00 | 1.00 |" in text  # the grace period and the last epoch by default
    assert "## Earlier measurements (old space)" in text and "5 configurations" in text


def test_seed_noise_compares_pre_training_seeds_with_fine_tune_seeds(tmp_path):
    data = make_table()
    key = next(iter(data["configs"]))  # width 8: validation 0.80 under every fine-tune seed of pre-training seed 0
    ft = lambda accs: [{"seed": s, "val_accuracy": a, "test_accuracy": a + 0.01, "cpu_s": 1.0}  # noqa: E731
                       for s, a in zip((1, 2, 3), accs)]
    data["pretrain_seeds"] = {key: {"2": {"epochs": [], "finetune": ft([0.90, 0.90, 0.90])},
                                    "1": {"epochs": [], "finetune": ft([0.84, 0.86, 0.85])}}}
    (row,) = ts.seed_noise(data)
    assert row.val_by_pretrain_seed == pytest.approx((0.80, 0.85, 0.90))  # seed 0 (the row), then 1, 2 in order
    assert row.test_by_pretrain_seed == pytest.approx((0.80, 0.86, 0.91))  # the row's own: test = validation
    assert row.pretrain_sd == pytest.approx(0.05)
    assert row.finetune_sd == pytest.approx(0.01 / 3)  # only pre-training seed 1's fine-tunes differ (sd 0.01)
    text = ts.noise_markdown([row])
    assert "| embed_dim 8 | 0.800 / 0.850 / 0.900 | 0.800 / 0.860 / 0.910 | 5.0 points | 0.3 points |" in text
    assert ts.seed_noise(make_table()) == [] and "No configuration" in ts.noise_markdown([])
    path, md = tmp_path / "t.json", tmp_path / "proxy.md"
    path.write_text(json.dumps(data))
    assert ts.main(["--table", str(path), "--md", str(md)]) == 0 and "5.0 points across pre-training" in md.read_text()
