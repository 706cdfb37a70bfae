"""One experiment directory (a local path or a URI): its layout, its settings, its inputs and its ledger. No Ray.

Layout of <experiment>/ (every name is a constant below):

    settings.json     the search's settings (search/settings.py), written when it starts and on each --resume
    inputs/           copies of the space and base-config files: a resumed, moved or copied experiment reads these
    ledger/           the ledger: every event of the experiment, append-only (search/record/ledger.py)
    study.db          the Optuna study (SQLite), unless --study-db names another database
    train_runs/<t>/   Ray Train's checkpoints of trial t;   tb/<t>/  its TensorBoard files
    <t>/, tuner.pkl, experiment_state-*.json, ...   Ray Tune's own state (what Tuner.restore reads)
    results.parquet, history.parquet, best/, pareto.png   derived from the ledger when a search ends
    trial_path        the trial path the search runs (lean or public, simmim_ray/_compat); a resume keeps it
    .lease            held by the one driver running the experiment (search/record/lease.py)
    trust/            keyed digests of Tune's pickles, checked before --resume unpickles them (search/record/trust.py)

The ledger is the record of the experiment; results.parquet, history.parquet, `simmim-ray report` and --resume are
derived from it (plus Optuna's study for the sampler and Tune's state for Tuner.restore, which stay theirs).

    exp = Experiment("experiments/digits_quick")
    exp.ledger.append(ledger.CONFIRMATION, trial_id="trial_3a", seed=1, test_accuracy=0.93)  # any stage may append
    exp.ledger.events(ledger.TRIAL_ENDED)                  # every event of a type, oldest first
    exp.ledger.latest(ledger.TRIAL_ENDED, trial_id="trial_3a")
    exp.ledger.final_result("trial_3a")                    # a trial's final report, if recorded
    tables.trial_rows(exp.ledger.events())                 # one row per trial (search/answer/tables.py)

During a search the driver's Tune callback (search/record/recorder.py) is the only writer of search events: each trial's
start (with its config), each result as it arrives, and its end (status, final metrics, checkpoint, error line).
Other stages append their own event types (ledger.py reserves CONFIRMATION and BASELINE) in their own files.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile

from simmim_ray.io import storage
from simmim_ray.errors import UserError
from simmim_ray.search.record import ledger
from simmim_ray.search.record.db_url import without_password
from simmim_ray.search.settings import SearchSettings, from_dict

SETTINGS = "settings.json"
INPUTS = "inputs"
LEDGER = "ledger"
LEGACY_TRIALS = "trials.jsonl"  # the driver's log before the ledger; read only
STUDY_DB = "study.db"
TRAIN_RUNS = "train_runs"
TB = "tb"
RESULTS = "results.parquet"
HISTORY = "history.parquet"
BEST = "best"
PARETO = "pareto.png"
TRIAL_PATH = "trial_path"  # which trial path (simmim_ray/_compat) the search runs: a resume must keep it
STUDY_CACHE = os.path.join("~", ".cache", "simmim-ray")  # the driver's copy of an object-store experiment's study


class Experiment:
    def __init__(self, uri: str) -> None:
        # one spelling per experiment (absolute path, or a URI as Ray is given it): the study cache is keyed on it
        self.uri = storage.resolve_storage(uri)[2]
        self.ledger = ledger.Ledger(self.path(LEDGER), legacy=self.path(LEGACY_TRIALS))

    @classmethod
    def at(cls, root: str, name: str) -> "Experiment":
        return cls(storage.join(root, name))

    def path(self, *names: str) -> str:
        return storage.join(self.uri, *names)

    def train_runs(self) -> str:
        return self.path(TRAIN_RUNS)

    def tb(self, trial_id: str) -> str:
        return self.path(TB, trial_id)

    @property
    def name(self) -> str:
        """The directory's own name (Tune's experiment name; not the study's, which settings.name keeps)."""
        return storage.resolve_storage(self.uri)[1].rstrip("/").rsplit("/", 1)[-1]

    def is_node_local(self) -> bool:
        return storage.is_node_local(self.uri)

    # ---- settings -------------------------------------------------------------------------------------------
    def exists(self) -> bool:
        return storage.exists(self.path(SETTINGS))

    def load_settings(self) -> SearchSettings:
        where = self.path(SETTINGS)
        if not storage.exists(where):
            raise UserError(f"{self.uri!r} is not an experiment directory (no {SETTINGS})")
        try:
            d = json.loads(storage.read_bytes(where).decode("utf-8"))
        except OSError as e:  # a directory or a named pipe where the file should be
            raise UserError(f"{where}: cannot be read ({e.strerror or e})") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise UserError(f"{where}: must be a JSON object of search settings, but it is not valid JSON "
                            f"({str(e).splitlines()[0][:80]})") from None
        return from_dict(d, where)

    def save_settings(self, s: SearchSettings) -> None:
        storage.write_text(self.path(SETTINGS), json.dumps(s.to_dict(), indent=2))

    # ---- inputs ---------------------------------------------------------------------------------------------
    def snapshot_inputs(self, s: SearchSettings) -> None:
        """Copies the space and base-config files into inputs/: settings.json names them by path, and a Ray Job's
        working_dir (or the machine that started the search) may be gone when `--resume` runs."""
        for path in (s.space_path, s.config_path):
            if path:
                with open(path, "rb") as f:
                    storage.write_bytes(self.path(INPUTS, os.path.basename(path)), f.read())

    def input_file(self, path: str) -> str:
        """A local file holding the experiment's copy of input `path` (same name: a space is named after its
        file); `path` itself for an experiment without a copy (the loader then names a missing file)."""
        copy = self.path(INPUTS, os.path.basename(path))
        if not path or not storage.exists(copy):
            return path
        if self.is_node_local():
            return storage.resolve_storage(copy)[1]
        local = os.path.join(tempfile.mkdtemp(prefix="simmim_inputs_"), os.path.basename(path))
        with open(local, "wb") as f:
            f.write(storage.read_bytes(copy))
        return local

    def input_digests(self, s: SearchSettings) -> dict[str, str]:
        """sha256 of each input copy, by file name."""
        out = {}
        for path in (s.space_path, s.config_path):
            copy = self.path(INPUTS, os.path.basename(path)) if path else ""
            if copy and storage.exists(copy):
                out[os.path.basename(path)] = hashlib.sha256(storage.read_bytes(copy)).hexdigest()
        return out

    # ---- the search's own events ----------------------------------------------------------------------------
    def record_start(self, s: SearchSettings, resumed: bool) -> None:
        """What the search started (or resumed) with: `check_unchanged` compares a later --resume against it."""
        self.ledger.append(ledger.SEARCH_STARTED, settings=s.to_dict(), inputs=self.input_digests(s), resumed=resumed)

    def check_unchanged(self, s: SearchSettings) -> None:
        """Refuses (one line) a resume of a search whose settings or input copies changed since it last started:
        the study, Tune's state and the finished trials all belong to the search as it started."""
        started = self.ledger.latest(ledger.SEARCH_STARTED)
        if started is None:  # an experiment of an older version, or killed before its first event
            return
        then = started.get("settings", {})
        if isinstance(then.get("study_db"), str):  # an older version stored the password too
            then = {**then, "study_db": without_password(then["study_db"])}
        now = json.loads(json.dumps(s.defining()))  # as the event stored it (lists, not tuples)
        for key in now:
            if then.get(key) != now[key]:
                raise UserError(f"{self.path(SETTINGS)}: `{key}` was {then.get(key)!r} when the search started, "
                                f"now {now[key]!r}; a search can only continue as it started (undo the change, "
                                f"or start a new search)")
        digests = self.input_digests(s)
        for name, digest in started.get("inputs", {}).items():
            if digests.get(name) != digest:
                raise UserError(f"{self.path(INPUTS, name)}: changed since the search started (sha256 "
                                f"{digest[:12]}..., now {(digests.get(name) or 'missing')[:12]}); a search can only "
                                f"continue as it started (undo the change, or start a new search)")

    # ---- the study's copy on object stores ------------------------------------------------------------------
    def study_cache(self) -> str:
        """The driver's local directory for an object-store experiment's study.db (SQLite cannot live on an
        object store), fetched from the experiment when this driver has none (a fresh driver resuming)."""
        d = os.path.join(os.path.expanduser(STUDY_CACHE), hashlib.sha1(self.uri.encode()).hexdigest()[:16])
        os.makedirs(d, exist_ok=True)
        local = os.path.join(d, STUDY_DB)
        if not os.path.exists(local) and storage.exists(self.path(STUDY_DB)):
            with open(local, "wb") as f:
                f.write(storage.read_bytes(self.path(STUDY_DB)))
        return d

    def upload_study(self) -> None:
        """Copies the cached study into the experiment (callers: only when the study lives in the cache)."""
        with open(os.path.join(self.study_cache(), STUDY_DB), "rb") as f:
            storage.write_bytes(self.path(STUDY_DB), f.read())
