"""benchmarks/search_table.py without training: a build resumes (what the table has is never measured again), and
RESULTS.md's record of the table names what it holds and its measured cost."""
from __future__ import annotations

import json

from benchmarks import search_table as st


def _fill(path, keys: list[str], extra: str | None = None) -> None:
    ep = [{"proxy_knn": 0.5, "loss": 1.0, "cpu_s": 2.0}] * 60  # 120 CPU s of pre-training per configuration
    ft = [{"seed": s, "val_accuracy": 0.9, "test_accuracy": 0.9, "cpu_s": 1.0} for s in (1, 2, 3)]

    def fill(t):
        for k in keys:
            t["configs"][k] = {"point": json.loads(k), "params": 1, "flops": 1, "epochs": ep, "finetune": ft}
        if extra:
            t["pretrain_seeds"] = {extra: {"1": {"epochs": ep, "finetune": ft}}}
    st._update(str(path), fill)


def test_a_resumed_build_measures_nothing_the_table_has(tmp_path, monkeypatch):
    path = tmp_path / "t.json"
    st.init_table(str(path), "digits_quick")
    key = st.config_key(st.grid(st.recipe("digits_quick")[0])[0])
    _fill(path, [key], extra=key)
    monkeypatch.setattr(st, "measure_pretrain", lambda *a: (_ for _ in ()).throw(AssertionError("measured again")))
    assert st.build_one((str(path), "digits_quick", key, None, 3)) == "have"
    assert st.build_one((str(path), "digits_quick", key, 1, 3)) == "have"


def test_the_cost_section_counts_every_measured_second(tmp_path):
    path = tmp_path / "t.json"
    st.init_table(str(path), "digits_quick")
    keys = [st.config_key(p) for p in st.grid(st.recipe("digits_quick")[0])[:2]]
    _fill(path, keys, extra=keys[0])
    text = st.cost_section(str(path), "digits_quick", jobs=2)
    assert "2 of 120 configurations of `digits_quick`" in text and "fine-tuned under 3 seeds" in text
    assert "1 of them also pre-trained under seeds 1, 2" in text
    assert "Cost: 369 CPU seconds measured" in text  # 3 x (60 epochs x 2 s + 3 fine-tunes x 1 s)
    assert st.status(str(path), "digits_quick").endswith(
        "2 of 120 configurations, 1 extra pre-training seeds, 369 CPU s measured")  # the same count
