"""The test split decides nothing in a search: only confirmation and the baselines read it."""
from __future__ import annotations

import numpy as np
import pytest
from proc_utils import trial_pids

from simmim_ray._compat import trial_path
from simmim_ray.metrics import TEST_ACCURACY, TEST_COUNT
from simmim_ray.search.record.ledger import TRIAL_STARTED


SEARCH = ["search", "digits_quick", "--trials", "2", "--target-accuracy", "0.05", "--scheduler", "fifo",
          "--workers-per-trial", "1", "--max-concurrent", "1", "--seed", "0",
          "--set", "train.epochs=2", "--set", "eval.epochs=1", "--set", "train.log_images=false",
          "--set", "train.batch_size=64", "--set", "model.img_size=16", "--set", "eval.batch_size=128"]
# two configurations, the second smaller: both are feasible at this target, and a configuration that cannot beat the
# smallest feasible one is never trained, so a larger one would not run
POINTS = "".join(f"- {{model.embed_dim: {w}, model.depth: {d}, mask.ratio: 0.6, loss.visible_weight: 0.0}}\n"
                 for w, d in ((48, 2), (32, 1)))
DECISIONS = ("status", "val_accuracy", "val_count", "proxy_knn", "params", "flops", "feasible", "epochs", "loss")


@pytest.mark.slow
def test_permuting_the_test_labels_changes_no_search_decision(ray_session, tmp_path, monkeypatch, capsys):
    """Two searches with fixed seeds (FIFO, one trial at a time, one worker each), the second with the test
    split's labels shuffled: the same trial configs, reports, objective values and feasibility; only what reads
    the test split differs (the pixel baseline). The first also confirms its smallest candidate on Ray."""
    from simmim_ray.cli import main
    from simmim_ray.data import splits as splits_mod
    from simmim_ray.search.answer import tables
    from simmim_ray.search.record.experiment import Experiment
    from simmim_ray.train import launch

    real_build, shared = splits_mod.build_splits, []

    def permuted(cfg):
        s = real_build(cfg)
        recs, idx = s.test.dataset, np.asarray(s.test.indices)
        labels = recs.labels.copy()
        labels[idx] = np.random.default_rng(7).permutation(labels[idx])
        assert (labels[idx] != recs.labels[idx]).mean() > 0.5
        recs.labels = labels  # every split is a Subset of these records: only the test items change
        return s

    real_share = launch.share_splits
    monkeypatch.setattr(launch, "share_splits", lambda cfg: shared.append(real_share(cfg)) or shared[-1])
    points = tmp_path / "points.yaml"
    points.write_text(POINTS)
    search = [*SEARCH, "--points", str(points)]
    assert main([*search, "--storage-path", str(tmp_path), "--name", "plain", "--confirm", "1",
                 "--confirm-seeds", "1"]) == 0
    out = capsys.readouterr().out
    # our TensorBoard hint, not Tune's configuration box and its hint to a directory of Ray's session
    assert f"tensorboard --logdir {tmp_path / 'plain' / 'tb'}" in out
    assert "Configuration for experiment" not in out and "driver_artifacts" not in out
    monkeypatch.setattr(splits_mod, "build_splits", permuted)
    assert main([*search, "--storage-path", str(tmp_path), "--name", "shuffled", "--confirm", "0"]) == 0
    # every trial's workers took the driver's (here: shuffled) splits from the object store
    assert len(shared) == 2 and all(x is not None for x in shared)

    def decisions(name: str):
        exp = Experiment(str(tmp_path / name))
        events = exp.ledger.events()
        rows, history = tables.trial_rows(events)
        tables.mark_feasible(rows, 0.05)
        order = [e["trial_id"] for e in events if e["event"] == TRIAL_STARTED]
        by = {r["trial_id"]: r for r in rows}
        trials = [({k: v for k, v in by[t].items() if "." in k}, {k: by[t][k] for k in DECISIONS}) for t in order]
        curves = [[(h["epoch"], h.get("proxy_knn"), h.get("loss")) for h in history if h["trial_id"] == t]
                  for t in order]
        reported = {k for e in events if e["event"] == "trial_result" for k in e["result"]}
        return trials, curves, reported, exp

    plain, shuffled = decisions("plain"), decisions("shuffled")
    assert len(plain[0]) == 2 and all(d["status"] == "complete" for _, d in plain[0])
    # the search's trial path: on the lean (default) one Tune handed the first trial's actor to the second; the
    # public one ends each trial's actor (its whole search: tests/scenarios/test_search_e2e.py)
    ids = [e["trial_id"] for e in plain[3].ledger.events(TRIAL_STARTED)]
    pids = trial_pids(tmp_path / "plain", ids)
    assert len(ids) == 2 and len(pids) == (1 if trial_path(say=False) == "lean" else 2), (ids, pids)
    assert plain[0] == shuffled[0] and plain[1] == shuffled[1]
    assert not {TEST_ACCURACY, TEST_COUNT} & (plain[2] | shuffled[2])  # no trial measured the test split
    # the shuffled labels did reach what reads the test split: the pixel baseline falls to about chance
    base = {n: d[3].ledger.latest("baseline", name="pixel_logreg")[TEST_ACCURACY] for n, d in
            (("plain", plain), ("shuffled", shuffled))}
    assert base["plain"] > 0.8 and base["shuffled"] < 0.4
    # the first search's confirmation and scratch baseline ran as Train jobs and were recorded
    conf = plain[3].ledger.events("confirmation")
    assert [len(e["runs"]) for e in conf] == [1] and all(0 <= r[TEST_ACCURACY] <= 1 for r in conf[0]["runs"])
    assert {r["test_count"] for r in conf[0]["runs"]} == {len(real_build(_digits_cfg()).test)}
    assert plain[3].ledger.events("baseline", name="scratch")


def _digits_cfg():
    from simmim_ray.config import Config

    return Config().with_overrides({"model.img_size": 16})
