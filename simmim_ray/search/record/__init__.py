"""The experiment record: everything a search keeps about an experiment, and the rules that keep it one record.
No Tune except `recorder` and `trust_callback` (the driver's Tune callbacks that write it).

- experiment.py: the experiment directory (local path or URI), its layout, settings.json and inputs/
- ledger.py, ledger_schema.py: the append-only record of every event, and each event type's schema
- recorder.py: the Tune callback that appends the trials' events (the only writer of them)
- lease.py, lease_owner.py, lease_s3.py: one driver per experiment
- trust.py, trust_callback.py: no unpickling of Tune state this machine's searches did not write
- study_store.py, db_url.py: where the Optuna study lives; a database URL's password, never stored
"""
from simmim_ray.facade import surface

__all__, __getattr__ = surface(__name__, {
    "Experiment": "experiment",
    "Ledger": "ledger",
    "Recorder": "recorder",
    "hold": "lease",
    "verify": "trust",
    "record_experiment": "trust",
    "PickleDigests": "trust_callback",
    "optuna_storage": "study_store",
    "check_study": "study_store",
    "check_new_study": "study_store",
    "close_study": "study_store",
    "without_password": "db_url",
})
