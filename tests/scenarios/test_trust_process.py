"""A resume through the real command, in a process of its own, refuses a replaced tuner.pkl and runs none of it (the
digests and their rules: tests/unit/search/test_trust.py)."""
from __future__ import annotations

import os
import pickle
import subprocess
import sys

import pytest
import repo_root

from simmim_ray.search.record import trust

REPO = repo_root.REPO


@pytest.fixture(autouse=True)
def own_key(tmp_path, monkeypatch):
    """Every test has its own key (never the user's ~/.config)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "simmim-ray" / "experiment.key"


class Marker:
    """A pickle that writes a file when loaded: what an attacker would put in place of tuner.pkl."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def resumable_experiment(tmp_path) -> str:
    """An experiment as a search leaves it before its trials (settings, inputs, study, Tune's tuner.pkl recorded)."""
    import optuna

    from simmim_ray.cli import build_parser
    from simmim_ray.cli.search_checks import validate_search

    (tmp_path / "s.yaml").write_text("params:\n  mask.ratio: {uniform: [0.4, 0.8]}\n")
    args = build_parser().parse_args(["search", str(tmp_path / "s.yaml"), "--storage-path", str(tmp_path / "exps"),
                                      "--target-accuracy", "0.5"])
    plan = validate_search(args)
    exp, s = plan.exp, plan.settings
    os.makedirs(exp.uri)
    exp.snapshot_inputs(s)
    exp.save_settings(s)
    exp.record_start(s, resumed=False)
    optuna.create_study(study_name=s.name, storage=f"sqlite:///{exp.uri}/study.db")
    with open(os.path.join(exp.uri, "tuner.pkl"), "wb") as f:
        pickle.dump({"tuner": "state"}, f)
    trust.record_experiment(exp.uri)
    return exp.uri


def test_resume_refuses_a_replaced_tuner_pkl_and_runs_none_of_it(tmp_path):
    """The real command in a process of its own: before the fix, Tuner.restore unpickled tuner.pkl (marker made)."""
    exp = resumable_experiment(tmp_path)
    marker = tmp_path / "pwned"
    with open(os.path.join(exp, "tuner.pkl"), "wb") as f:
        pickle.dump(Marker(str(marker)), f)
    # were it not refused, a private Ray would start (its own temp dir) and Tune would unpickle tuner.pkl
    env = {**os.environ, "RAY_ADDRESS": "local", "RAY_TMPDIR": str(tmp_path / "r"),
           "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    p = subprocess.run([sys.executable, "-m", "simmim_ray", "search", "--resume", exp], capture_output=True, text=True,
                       timeout=300, env=env, cwd=tmp_path)
    assert p.returncode == 2, p.stderr[-3000:]
    assert p.stderr.strip().splitlines() == [
        f"simmim-ray: error: --resume {exp}: {exp}/tuner.pkl is not a pickle this machine's searches wrote (changed, "
        f"copied from elsewhere, from an older simmim-ray, or written as a driver was killed) and Tune would run any "
        f"code in it; if you trust this experiment, resume with --trust-experiment"]
    assert not marker.exists()
