"""Where a search's Optuna study lives: `--study-db URL`, `<exp>/study.db`, or for an object-store experiment a
SQLite file in the driver's cache that is copied into the experiment (SQLite cannot live on an object store; the
copy is the experiment's: search/record/experiment.py)."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

from simmim_ray.io.storage import exists, resolve_storage
from simmim_ray.errors import UserError
from simmim_ray.search.record import db_url
from simmim_ray.search.record.db_errors import explain
from simmim_ray.search.record.experiment import STUDY_DB, Experiment

if TYPE_CHECKING:
    from simmim_ray.search.settings import SearchSettings


def study_in_cache(s: SearchSettings, exp: Experiment) -> bool:
    """The study lives in the driver's local cache: an object-store experiment without `--study-db`."""
    return not s.study_db and not exp.is_node_local()


def optuna_storage(s: SearchSettings, exp: Experiment):
    """The study's database: `--study-db URL`, else the experiment's study.db (SQLite) where the experiment is
    now; for an s3:// or gs:// experiment, in the driver's cache (fetched from the experiment when not there)."""
    import optuna  # where a study is opened: the search command's checks import this module

    url = db_url.connect_url(s.study_db)  # the password, if any, from the command line or the environment
    if not url:
        local = exp.study_cache() if study_in_cache(s, exp) else resolve_storage(exp.uri)[1]
        url = f"sqlite:///{local}/{STUDY_DB}"
    try:
        return optuna.storages.RDBStorage(url, heartbeat_interval=None)
    except Exception as e:  # noqa: BLE001 - sqlalchemy raises many types for a bad URL
        raise UserError(f"--study-db {db_url.masked(url)!r}: cannot open the Optuna database: "
                        f"{explain(e, url)}") from None


def check_study(s: SearchSettings, exp: Experiment) -> None:
    """`--resume` continues the experiment's Optuna study (Tune's restored searcher holds its trial ids): refuse
    before Ray starts when it is gone, instead of failing inside Tune. Also what fetches an object-store
    experiment's study into the driver's cache, where the restored searcher opens it."""
    import optuna  # where a study is opened: the search command's checks import this module

    def refuse(url: str) -> UserError:
        return UserError(f"--resume {exp.uri}: the search's Optuna study {s.name!r} is not in {url} "
                         f"(a search can only continue with its study)")

    if not s.study_db:  # opening a missing SQLite file would create it: refuse before touching the experiment
        local = os.path.join(exp.study_cache(), STUDY_DB) if study_in_cache(s, exp) else None
        if local is None and not exists(exp.path(STUDY_DB)) or local is not None and not os.path.exists(local):
            raise refuse(f"sqlite:///{local or resolve_storage(exp.path(STUDY_DB))[1]}")
    storage = optuna_storage(s, exp)  # an object-store experiment's study is fetched into the local cache here
    if s.name not in optuna.get_all_study_names(storage):
        raise refuse(db_url.masked(storage.url))


def check_new_study(s: SearchSettings, exp: Experiment) -> None:
    """A new search creates its study; Optuna would silently join a study of that name already in the database
    (another search's trials would then steer this one's sampler and appear in its study): refuse it."""
    import optuna  # where a study is opened: the search command's checks import this module

    storage = optuna_storage(s, exp)
    if s.name in optuna.get_all_study_names(storage):
        where = (f"--study-db {storage.url!r}" if s.study_db else
                 f"the driver's study cache {storage.url!r} for {exp.uri}")
        raise UserError(f"{where} already holds an Optuna study {s.name!r} that is not this experiment's (a new search "
                        f"would join it); give another --name or --study-db, or continue its search with --resume")


def upload_study(s: SearchSettings, exp: Experiment) -> None:
    if study_in_cache(s, exp):
        exp.upload_study()


def close_study(s: SearchSettings, exp: Experiment) -> None:
    """After the search: orphaned study trials marked FAIL, the study copied into an object-store experiment."""
    import optuna  # where a study is opened: the search command's checks import this module

    from simmim_ray.search.study import fail_orphans

    study = optuna.load_study(study_name=s.name, storage=optuna_storage(s, exp))
    n = fail_orphans(study)
    if n:
        print(f"simmim-ray: {n} study trial(s) asked before an interruption were never run; marked FAIL")
    upload_study(s, exp)
