"""How `simmim-ray search` ends when it has no answer: exit 3 (a Ray job: FAILED) by default, exit 0 with
`--no-answer-exit 0` (SUCCEEDED; the answer state in `report --json`), the report printed once either way. The
driver's real ending (answer/stage.run_answer_stage on a stored experiment whose best trial misses the target) under the real CLI;
validation, the lease and Ray are stood in for, since what is checked is only how the command ends."""
from __future__ import annotations

import json

import pytest
from test_results import experiment  # noqa: F401 - the fixture: a stored experiment with four trials

from simmim_ray.cli import main
from simmim_ray.cli.search_checks import SearchPlan
from simmim_ray.search.settings import SearchSettings

REPORT_HEAD = "No trial reached the target"  # the text report's line for this experiment (target 0.99)


@pytest.fixture
def no_answer_search(experiment, monkeypatch):  # noqa: F811 - pytest's fixture by name
    """`simmim-ray search` whose run is the answer stage of the stored experiment, at an unreachable target."""
    from simmim_ray.cli import search
    from simmim_ray.search import driver
    from simmim_ray.search.answer.stage import run_answer_stage
    from simmim_ray.train import ray_init

    exp, _ = experiment
    s = SearchSettings(space_path="x", name="exp", root="/r", trials=6, target_accuracy=0.99)
    monkeypatch.setattr(search, "validate_search", lambda args: SearchPlan(s, None, None, exp, False))
    monkeypatch.setattr(search, "check_new_experiment", lambda exp: None)
    monkeypatch.setattr(ray_init, "init_ray", lambda *a, **k: None)
    monkeypatch.setattr(driver, "run_search", lambda s, space, base, exp, resume: run_answer_stage(s, exp))
    return exp


def test_no_answer_exits_3_with_the_report_once(no_answer_search, capsys):
    assert main(["search"]) == 3
    out, err = capsys.readouterr()
    assert out.count(REPORT_HEAD) == 1, out
    assert err.count("\n") == 1 and err.startswith("simmim-ray: no trial reached accuracy >= 0.99; best was 0.9500 "
                                                   "by trial_b (params 1,000,000)")  # counts one way, never 1e+06
    # --confirm 3 with nothing feasible: one line, not the header of an empty table
    assert "Confirmation: no candidate (no trial was feasible on validation)" in out
    assert "val mean ± std" not in out and "Confirmation compute" not in out


def test_no_answer_exit_0_succeeds_and_report_json_says_why(no_answer_search, capsys):
    exp = no_answer_search
    assert main(["search", "--no-answer-exit", "0"]) == 0
    out, err = capsys.readouterr()
    assert out.count(REPORT_HEAD) == 1, out
    assert err.count("\n") == 1 and "no trial reached accuracy >= 0.99" in err
    assert err.rstrip().endswith(f"(exit 0 by --no-answer-exit; the answer state: simmim-ray report {exp.uri} "
                                 f"--json)")
    assert main(["report", exp.uri, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["winner"] is None


@pytest.mark.parametrize("code", ["1", "2", "130"])
def test_no_answer_exit_takes_only_3_or_0(code, capsys):
    """The codes a crash, bad input and a signal exit with: refused before anything runs."""
    assert main(["search", "--no-answer-exit", code]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"simmim-ray: error: --no-answer-exit must be 3 (a search without an answer fails) or 0 "
                          f"(it succeeds; `report --json` says `answer`), but got {code}")


def test_no_answer_exit_3_is_the_default_spelled_out(no_answer_search, capsys):
    assert main(["search", "--no-answer-exit", "3"]) == 3
