"""No unpickling of what this machine's searches did not write (simmim_ray/search/record/trust.py): keyed digests of Tune's
pickles, recorded before Tune copies them into the experiment, checked before `--resume` unpickles anything."""
from __future__ import annotations

import os
import pickle
import shutil
import stat
from types import SimpleNamespace

import pytest

from simmim_ray.errors import UserError
from simmim_ray.search.record import trust
from simmim_ray.search.record.trust_callback import PickleDigests


@pytest.fixture(autouse=True)
def own_key(tmp_path, monkeypatch):
    """Every test has its own key (never the user's ~/.config)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "simmim-ray" / "experiment.key"


def fake_experiment(root) -> str:
    """The pickles Tune leaves in an experiment, beside files that are no pickles."""
    exp = root / "exp"
    for rel, data in {"tuner.pkl": b"t", "experiment_state-2026-01-01_00-00-00.json": b"{}",
                      "search_gen_state-2026-01-01_00-00-00.json": b"g", "searcher-state-2026-01-01.pkl": b"s",
                      "trial_a/params.pkl": b"p", "trial_a/result.json": b"{}", "settings.json": b"{}",
                      "ledger/trial_a.jsonl": b"{}"}.items():
        (exp / rel).parent.mkdir(parents=True, exist_ok=True)
        (exp / rel).write_bytes(data)
    return str(exp)


def test_key_is_made_private_once_and_kept(own_key):
    key = trust.load_key(create=True)
    assert len(key) == 32 and stat.S_IMODE(os.stat(own_key).st_mode) == 0o600
    assert trust.load_key(create=True) == key and trust.load_key(create=False) == key


def test_a_key_others_can_read_is_refused(own_key):
    trust.load_key(create=True)
    os.chmod(own_key, 0o644)
    with pytest.raises(UserError, match=r"must be yours and private \(chmod 600 "):
        trust.load_key(create=False)


def test_relative_xdg_config_home_is_ignored(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CONFIG_HOME", "rel")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert trust.key_path() == str(tmp_path / ".config" / "simmim-ray" / "experiment.key")


def test_pickles_are_every_pkl_and_tunes_state_json():
    assert trust.is_pickle("tuner.pkl") and trust.is_pickle("trial_a/error.pkl")
    assert trust.is_pickle("experiment_state-x.json") and trust.is_pickle("search_gen_state-x.json")
    assert not trust.is_pickle("trial_a/result.json") and not trust.is_pickle("settings.json")
    assert not trust.is_pickle("trial_a/experiment_state-x.json")  # Tune reads its state from the root only


def test_recorded_experiment_verifies_and_a_changed_pickle_is_refused(tmp_path):
    exp = fake_experiment(tmp_path)
    trust.record_experiment(exp)
    trust.verify(exp, trusted=False)
    with open(os.path.join(exp, "tuner.pkl"), "wb") as f:
        f.write(b"evil")
    with pytest.raises(UserError) as e:
        trust.verify(exp, trusted=False)
    assert str(e.value) == (
        f"--resume {exp}: {exp}/tuner.pkl is not a pickle this machine's searches wrote (changed, copied from "
        f"elsewhere, from an older simmim-ray, or written as a driver was killed) and Tune would run any code in it; "
        f"if you trust this experiment, resume with --trust-experiment")


def test_an_unrecorded_pickle_is_refused_and_each_is_counted(tmp_path):
    exp = fake_experiment(tmp_path)
    trust.record_experiment(exp)
    (tmp_path / "exp" / "trial_a" / "error.pkl").write_bytes(b"x")
    (tmp_path / "exp" / "zz.pkl").write_bytes(b"y")
    with pytest.raises(UserError, match=r"trial_a/error.pkl and 1 more is not a pickle"):
        trust.verify(exp, trusted=False)


def test_a_digest_made_with_another_key_is_refused(tmp_path, monkeypatch):
    """The record lies in the experiment, open to whoever can write there; without the key no digest verifies."""
    exp = fake_experiment(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "other"))
    trust.record_experiment(exp)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "mine"))
    with pytest.raises(UserError, match="tuner.pkl and 4 more"):
        trust.verify(exp, trusted=False)


def test_a_file_moved_to_another_name_is_refused(tmp_path):
    exp = fake_experiment(tmp_path)
    trust.record_experiment(exp)
    shutil.copy(os.path.join(exp, "trial_a", "params.pkl"), os.path.join(exp, "tuner.pkl"))
    with pytest.raises(UserError, match="tuner.pkl is not"):
        trust.verify(exp, trusted=False)


def test_trusted_warns_once_records_and_then_verifies(tmp_path, capsys):
    exp = fake_experiment(tmp_path)
    trust.verify(exp, trusted=True)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("simmim-ray: warning: --trust-experiment: unpickling ")
    trust.verify(exp, trusted=False)
    assert capsys.readouterr().err == ""


def test_recent_versions_of_a_file_verify_older_ones_do_not(tmp_path):
    """Tune's copy into the experiment may lag the record by one save; a version KEEP saves old no longer counts."""
    exp = fake_experiment(tmp_path)
    versions = [f"v{i}".encode() for i in range(trust.KEEP + 1)]
    for v in versions:
        trust.record_files(exp, {"tuner.pkl": v})
    for v, ok in zip(versions, [False] + [True] * trust.KEEP):
        (tmp_path / "exp" / "tuner.pkl").write_bytes(v)
        assert ("tuner.pkl" not in trust.unverified(exp)) == ok, v


def test_a_broken_record_verifies_nothing(tmp_path):
    exp = fake_experiment(tmp_path)
    trust.record_experiment(exp)
    (tmp_path / "exp" / trust.RECORD).write_text("[not json")
    with pytest.raises(UserError):
        trust.verify(exp, trusted=False)


def staged_trial(staging, exp):
    return SimpleNamespace(storage=SimpleNamespace(experiment_driver_staging_path=str(staging),
                                                   experiment_fs_path=str(exp)))


def test_callback_records_staged_pickles_before_tune_copies_them(tmp_path):
    """What Tune does in a save: stage its files, ask callbacks for their state, copy the staging directory into the
    experiment. The copy verifies; the callback holds no state for Tune to pickle, and pickles no key."""
    staging, exp = tmp_path / "staging", tmp_path / "exp"
    exp.mkdir()
    cb = PickleDigests(str(exp))
    cb.on_step_begin(0, [staged_trial(staging, exp)])
    for i in range(2):
        (staging / "trial_a").mkdir(parents=True, exist_ok=True)
        (staging / f"experiment_state-{i}.json").write_bytes(f"state {i}".encode())
        (staging / "searcher-state-0.pkl").write_bytes(f"searcher {i}".encode())
        (staging / "trial_a" / "params.pkl").write_bytes(b"params")
        assert cb.get_state() is None
        shutil.copytree(staging, exp, dirs_exist_ok=True)
        trust.verify(str(exp), trusted=False)
    assert pickle.loads(pickle.dumps(cb)).__dict__ == PickleDigests(str(exp)).__dict__
    assert set(cb.__getstate__()) == {"uri"}


def test_a_resumed_search_keeps_the_record_current(tmp_path):
    """Tune's restore copies the experiment's top-level *.json and *.pkl into its new staging directory
    (ray/tune/execution/experiment_state.py, sync_down_experiment_state), and each save copies that directory back
    over the experiment: the record must not travel with them, or its stale copy would replace the current one."""
    staging, exp = tmp_path / "staging", tmp_path / "exp"
    staging.mkdir()
    exp.mkdir()
    cb = PickleDigests(str(exp))
    cb.on_step_begin(0, [staged_trial(staging, exp)])
    (staging / "searcher-state-1.pkl").write_bytes(b"first session")
    cb.get_state()
    shutil.copytree(staging, exp, dirs_exist_ok=True)
    restored = tmp_path / "staging2"  # the resumed driver
    restored.mkdir()
    for f in exp.iterdir():
        if f.is_file() and f.suffix in (".json", ".pkl"):
            shutil.copy(f, restored / f.name)
    cb = PickleDigests(str(exp))
    cb.on_step_begin(0, [staged_trial(restored, exp)])
    for i in range(2):
        (restored / "trial_b").mkdir(exist_ok=True)
        (restored / "trial_b" / "params.pkl").write_bytes(f"second session {i}".encode())
        cb.get_state()
        shutil.copytree(restored, exp, dirs_exist_ok=True)
    trust.verify(str(exp), trusted=False)


def test_callback_records_where_the_experiment_is_now(tmp_path):
    """A callback restored from a moved experiment's tuner.pkl names where it was; Tune's trials know where it is."""
    staging, exp = tmp_path / "staging", tmp_path / "moved"
    staging.mkdir()
    exp.mkdir()
    (staging / "searcher-state-0.pkl").write_bytes(b"s")
    cb = pickle.loads(pickle.dumps(PickleDigests(str(tmp_path / "was_here"))))
    cb.on_step_begin(0, [staged_trial(staging, exp)])
    cb.get_state()
    shutil.copytree(staging, exp, dirs_exist_ok=True)
    trust.verify(str(exp), trusted=False)
    assert not (tmp_path / "was_here").exists()


class StartingTrial:
    """What Tune's JSON logger reads of a trial it starts (hashable, as Tune's trials are)."""

    def __init__(self, staging, exp, name: str) -> None:
        self.local_path = str(staging / name)
        self.storage = staged_trial(staging, exp).storage
        self.config = {"model.embed_dim": 64, "mask.ratio": 0.6, "train.epochs": 2}
        os.makedirs(self.local_path, exist_ok=True)


def test_a_trials_params_pickle_is_recorded_before_it_is_written(tmp_path, monkeypatch):
    """Tune's JSON logger writes params.pkl into the staging directory when a trial starts, while the copy of an
    earlier save may still be running: a copy that picks it up and a kill before the next save must leave an
    experiment that verifies. The callback is that logger, and records the pickle's bytes before it writes them."""
    staging, exp = tmp_path / "staging", tmp_path / "exp"
    exp.mkdir()
    cb = PickleDigests(str(exp))
    trial = StartingTrial(staging, exp, "trial_c")
    existed = []
    record_files = trust.record_files
    monkeypatch.setattr(trust, "record_files", lambda uri, files: (
        existed.append({rel: (staging / rel).exists() for rel in files}), record_files(uri, files))[1])
    cb.update_config(trial, trial.config)  # what Tune's log_trial_start calls (checked below)
    assert existed == [{"trial_c/params.pkl": False}]
    shutil.copytree(staging, exp, dirs_exist_ok=True)  # the running copy lands; no save follows (a kill)
    trust.verify(str(exp), trusted=False)
    assert pickle.loads((exp / "trial_c" / "params.pkl").read_bytes()) == trial.config
    assert (exp / "trial_c" / "params.json").exists()  # still Tune's logger: params.json too


def test_a_params_pickle_recorded_with_other_bytes_is_recorded_at_the_next_save(tmp_path, monkeypatch):
    """Should Tune's pickle of a config ever differ from the callback's, the next save records what was written."""
    staging, exp = tmp_path / "staging", tmp_path / "exp"
    exp.mkdir()
    cb = PickleDigests(str(exp))
    trial = StartingTrial(staging, exp, "trial_d")
    cb.on_step_begin(0, [trial])
    cb.get_state()
    monkeypatch.setattr(trust, "record_files", lambda uri, files: None)  # as if the first record were of other bytes
    cb.update_config(trial, trial.config)
    monkeypatch.undo()
    cb.get_state()
    shutil.copytree(staging, exp, dirs_exist_ok=True)
    trust.verify(str(exp), trusted=False)


def test_trials_made_after_a_copy_is_resumed_record_nothing_in_the_original(tmp_path):
    """Tune restores its searcher with the location the search started in: the trials it makes after a copied
    experiment is resumed stage their files under the original's name, where no save copies from. Their params.pkl
    lands nowhere, and the original is left as it was; the copy's own trials are recorded in the copy."""
    original, copy = tmp_path / "original", tmp_path / "copy"
    original.mkdir()
    copy.mkdir()
    cb = pickle.loads(pickle.dumps(PickleDigests(str(original))))  # as Tuner.restore gives it back
    restored = StartingTrial(tmp_path / "staging_copy", copy, "trial_a")
    made_after = StartingTrial(tmp_path / "staging_original", original, "trial_b")
    cb.on_step_begin(0, [restored, made_after])
    cb.update_config(restored, restored.config)
    cb.update_config(made_after, made_after.config)
    assert not os.listdir(original)
    assert set(trust.load_record(str(copy))) == {"trial_a/params.pkl"}


def test_ray_still_gives_trials_the_staging_and_experiment_paths():
    """The callback reads Tune's staging directory from each trial's StorageContext (a Ray DeveloperAPI)."""
    from ray.train._internal.storage import StorageContext

    assert isinstance(StorageContext.experiment_driver_staging_path, property)
    assert isinstance(StorageContext.experiment_fs_path, property)
    from ray.tune.experiment.trial import Trial
    import inspect

    assert "self.storage = " in inspect.getsource(Trial.__init__)
    from ray.tune.logger import JsonLoggerCallback
    from ray.tune.utils.callback import _create_default_callbacks

    # the callback records each params.pkl where Tune's JSON logger writes it, and stands in for that logger
    assert "self.update_config(trial, trial.config)" in inspect.getsource(JsonLoggerCallback.log_trial_start)
    assert "params.pkl" in inspect.getsource(JsonLoggerCallback.update_config) or \
        "EXPR_PARAM_PICKLE_FILE" in inspect.getsource(JsonLoggerCallback.update_config)
    callbacks = _create_default_callbacks([PickleDigests("unused")])
    assert sum(isinstance(c, JsonLoggerCallback) for c in callbacks) == 1
