"""An experiment directory on the command line: `--resume DIR` works on DIR (a copy, a moved experiment), refuses
changed settings, inputs or search-defining flags before anything is written, and damaged record files are one
line naming the file (exit 2). Ray never starts here: the driver is replaced by a recorder of its arguments."""
from __future__ import annotations

import json
import os
import shutil

import optuna
import pytest
from proc_utils import tree

from simmim_ray.cli import main
from simmim_ray.search.record.ledger import TRIAL_STARTED
from simmim_ray.search.record.experiment import INPUTS, SETTINGS, Experiment
from simmim_ray.search.settings import SearchSettings

SPACE = "params:\n  mask.ratio: {uniform: [0.4, 0.8]}\nfixed:\n  train.epochs: 2\n"




@pytest.fixture
def started(tmp_path, monkeypatch):
    """An experiment as a search leaves it when its driver is killed after starting (settings, inputs, the
    search's start event, its study); the search driver and Ray replaced by a recorder of their arguments."""
    (tmp_path / "spaces").mkdir()
    (tmp_path / "spaces" / "q.yaml").write_text(SPACE)
    s = SearchSettings(space_path=str(tmp_path / "spaces" / "q.yaml"), name="q", root=str(tmp_path / "exps"),
                       trials=2, target_accuracy=0.5, overrides=("eval.epochs=1",))
    exp = Experiment.at(s.root, s.name)
    exp.snapshot_inputs(s)
    exp.save_settings(s)
    exp.record_start(s, resumed=False)
    exp.ledger.append(TRIAL_STARTED, trial_id="trial_1", config={"mask.ratio": 0.5})
    optuna.create_study(study_name="q", storage=f"sqlite:///{exp.uri}/study.db", directions=["minimize", "maximize"])
    calls = []
    monkeypatch.setattr("simmim_ray.train.ray_init.init_ray", lambda *a, **k: None)
    monkeypatch.setattr("simmim_ray.search.driver.run_search",
                        lambda s, space, base, exp, resume: calls.append((s, space, base, exp, resume)) or 0)
    monkeypatch.chdir(tmp_path)
    return exp, calls


def run(argv, capsys) -> tuple[int, list[str]]:
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    return rc, [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]


def test_layout_names_and_inputs(started):
    exp, _ = started
    assert exp.name == "q" and exp.path("ledger") == os.path.join(exp.uri, "ledger")
    assert exp.train_runs() == os.path.join(exp.uri, "train_runs") and exp.tb("trial_1").endswith("/tb/trial_1")
    assert exp.input_file("/gone/elsewhere/q.yaml") == os.path.join(exp.uri, INPUTS, "q.yaml")
    assert exp.input_file("/gone/no_copy.yaml") == "/gone/no_copy.yaml"  # the loader names the missing file
    assert exp.load_settings().overrides == ("eval.epochs=1",)


def test_resume_continues_the_directory_given_as_it_started(started, capsys):
    exp, calls = started
    before = tree(exp.uri)
    rc, err = run(["search", "--resume", exp.uri, "--trials", "5"], capsys)
    assert rc == 0 and err == []
    s, space, base, got, resume = calls[-1]
    assert (got.uri, resume, s.trials, space.name, base.train.epochs, base.eval.epochs) == (
        exp.uri, True, 5, "q", 2, 1)
    assert tree(exp.uri) == before  # the checks wrote nothing (the driver writes the new start event)


def test_a_copy_resumes_itself_and_a_moved_experiment_resumes_where_it_is(started, tmp_path, capsys):
    exp, calls = started
    copy = tmp_path / "elsewhere" / "copy_of_q"
    shutil.copytree(exp.uri, copy)
    os.remove(tmp_path / "spaces" / "q.yaml")  # the space file is gone: the experiment's own copy serves
    assert run(["search", "--resume", str(copy)], capsys)[0] == 0
    assert calls[-1][3].uri == str(copy) and calls[-1][0].name == "q"  # the study keeps its name
    moved = tmp_path / "moved"
    shutil.move(exp.uri, moved)
    assert run(["search", "--resume", str(moved)], capsys)[0] == 0
    assert calls[-1][3].uri == str(moved)


@pytest.mark.parametrize("alter, words", [
    (lambda e: e.save_settings(SearchSettings(**{**e.load_settings().to_dict(), "target_accuracy": 0.9,
                                                 "overrides": ("eval.epochs=1",)})),
     "settings.json: `target_accuracy` was 0.5 when the search started, now 0.9"),
    (lambda e: open(e.path(INPUTS, "q.yaml"), "a").write("  model.depth: {int: [1, 2]}\n"),
     "inputs/q.yaml: changed since the search started"),
])
def test_a_changed_experiment_is_refused_before_anything_is_written(started, capsys, alter, words):
    exp, calls = started
    alter(exp)
    before = tree(exp.uri)
    rc, err = run(["search", "--resume", exp.uri], capsys)
    assert rc == 2 and len(err) == 1 and words in err[0] and "start a new search" in err[0], err
    assert calls == [] and tree(exp.uri) == before


@pytest.mark.parametrize("flags, named", [
    (["--set", "train.epochs=3"], "--set"),
    (["spaces/q.yaml"], "SPACE"),
    (["--workers-per-trial", "1", "--target-accuracy", "0.5"], "--target-accuracy, --workers-per-trial"),
])
def test_flags_that_would_change_a_started_search_are_refused(started, capsys, flags, named):
    exp, calls = started
    before = tree(exp.uri)
    rc, err = run(["search", "--resume", exp.uri, *flags], capsys)
    assert rc == 2 and len(err) == 1 and f"; {named} would change it" in err[0], err
    assert calls == [] and tree(exp.uri) == before


@pytest.mark.parametrize("content, words", [
    (b'{"space_path": "/s/q.yaml", "name": "q", "ro', "settings.json: must be a JSON object of search settings, "
                                                    "but it is not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
    (b"[]", "settings.json: must hold a JSON object of search settings, but got list"),
    (None, "settings.json: unknown key `colour`"),
])
@pytest.mark.parametrize("command", ["resume", "report"])
def test_damaged_settings_are_one_line_naming_the_file(started, capsys, content, words, command):
    exp, calls = started
    path = exp.path(SETTINGS)
    if content is None:
        d = json.loads(open(path).read())
        content = json.dumps({**d, "colour": "red"}).encode()
    with open(path, "wb") as f:
        f.write(content)
    rc, err = run(["search", "--resume", exp.uri] if command == "resume" else ["report", exp.uri], capsys)
    assert rc == 2 and len(err) == 1 and f"{path}: " in err[0] and words in err[0], err
    assert calls == []


def test_report_warns_of_a_damaged_line_and_skips_a_line_cut_by_a_kill(started, capsys):
    """A damaged line costs its event, with one warning on stderr (stdout stays the report), not the report: it
    used to refuse the whole ledger (exit 2), which hid every result over one hand-edited line."""
    exp, _ = started
    trial_file = exp.path("ledger", "trial_1.jsonl")
    with open(trial_file, "a") as f:
        f.write('{"event": "trial_res')  # cut by a kill
    assert run(["report", exp.uri], capsys) == (0, [])
    with open(trial_file, "a") as f:
        f.write("\nnot an event\n")
    assert main(["report", "--json", exp.uri]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["status_counts"] == {"running": 1}  # trial_1's start, read around the damage
    assert err.splitlines() == [f"simmim-ray: warning: {trial_file} line 3: a ledger line must be an event (a JSON "
                                f"object), but got 'not an event'; line skipped"]


def test_report_refuses_a_ledger_that_is_no_directory_of_the_experiment(started, tmp_path, capsys):
    """A ledger/ linking to itself read as an empty ledger ("0 trials", exit 0); one linking out of the experiment
    read another experiment's record. Both are refused in one line."""
    exp, _ = started
    ledger = exp.path("ledger")
    shutil.move(ledger, tmp_path / "elsewhere")
    os.symlink("ledger", ledger)
    rc, err = run(["report", exp.uri], capsys)
    assert (rc, err) == (2, [f"simmim-ray: error: '{ledger}' cannot be read as the ledger (Too many levels of "
                             f"symbolic links); the ledger must be a directory of the experiment"])
    os.remove(ledger)
    os.symlink(tmp_path / "elsewhere", ledger)
    rc, err = run(["report", exp.uri], capsys)
    assert (rc, err) == (2, [f"simmim-ray: error: '{ledger}' links out of the experiment (to "
                             f"'{tmp_path / 'elsewhere'}'); the ledger must be a directory of the experiment"])
    os.remove(ledger)
    shutil.move(tmp_path / "elsewhere", ledger)
    assert run(["report", exp.uri], capsys)[0] == 0


def test_report_refuses_a_settings_json_that_is_a_named_pipe(started, capsys):
    exp, _ = started
    os.remove(exp.path(SETTINGS))
    os.mkfifo(exp.path(SETTINGS))  # read with a plain open, it blocked the report forever
    rc, err = run(["report", exp.uri], capsys)
    assert (rc, err) == (2, [f"simmim-ray: error: {exp.path(SETTINGS)}: cannot be read ({exp.path(SETTINGS)} is a "
                             f"named pipe, not a regular file)"])


def test_study_db_flag_and_its_deprecated_alias(started, tmp_path, capsys):
    _, calls = started
    url = f"sqlite:///{tmp_path}/shared.db"
    common = ["search", "spaces/q.yaml", "--target-accuracy", "0.5", "--storage-path", "new"]
    assert run([*common, "--name", "a", "--study-db", url], capsys) == (0, [])
    assert calls[-1][0].study_db == url and calls[-1][0].root == str(tmp_path / "new")
    rc, err = run([*common, "--name", "b", "--storage", url], capsys)
    assert rc == 0 and len(err) == 1 and "--storage is deprecated" in err[0] and "--study-db" in err[0]
    assert calls[-1][0].study_db == url
    rc, err = run([*common, "--name", "c", "--storage", url, "--study-db", url + "x"], capsys)
    assert rc == 2 and "give --study-db only" in err[-1]
