"""Where a search's Optuna study lives: `--storage URL`, `<exp>/study.db`, or for an object-store experiment a
SQLite file in the driver's cache that is copied into the experiment (SQLite cannot live on an object store)."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

from simmim_ray.errors import UserError

if TYPE_CHECKING:
    from simmim_ray.search.settings import SearchSettings


def optuna_storage(s: SearchSettings, exp: str):
    """The study's database: `--storage URL`, else `<exp>/study.db` (SQLite). SQLite cannot live on an object
    store, so for an s3:// or gs:// experiment it sits in a local cache on the driver, is copied into the
    experiment each time a trial ends and when the search ends, and is fetched back by --resume on a fresh driver."""
    import optuna

    from simmim_ray import storage as sio

    url = s.study_storage
    if not url:
        url = f"sqlite:///{sio.resolve_storage(exp)[1] if sio.is_node_local(exp) else study_cache(exp)}/study.db"
    try:
        return optuna.storages.RDBStorage(url, heartbeat_interval=None)
    except Exception as e:  # noqa: BLE001 - sqlalchemy raises many types for a bad URL
        raise UserError(f"--storage {url!r}: cannot open the Optuna database: {str(e).splitlines()[0]}") from None


def check_study(s: SearchSettings, exp: str) -> None:
    """`--resume` continues the experiment's Optuna study (Tune's restored searcher holds its trial ids): refuse
    before Ray starts when it is gone, instead of failing inside Tune. Also what fetches an object-store
    experiment's study into the driver's cache, where the restored searcher opens it."""
    import optuna

    storage = optuna_storage(s, exp)  # an object-store experiment's study is fetched into the local cache here
    if s.name not in optuna.get_all_study_names(storage):
        raise UserError(f"--resume {exp}: the search's Optuna study {s.name!r} is not in {storage.url} "
                        f"(a search can only continue with its study)")


def study_cache(exp: str) -> str:
    """The driver's local directory for an object-store experiment's study.db, fetched from the experiment when
    this driver has none (a fresh driver resuming)."""
    import hashlib

    from simmim_ray import storage as sio

    d = os.path.join(os.path.expanduser("~/.cache/simmim-ray"), hashlib.sha1(exp.encode()).hexdigest()[:16])
    os.makedirs(d, exist_ok=True)
    local = os.path.join(d, "study.db")
    if not os.path.exists(local) and sio.exists(sio.join(exp, "study.db")):
        with open(local, "wb") as f:
            f.write(sio.read_bytes(sio.join(exp, "study.db")))
    return d


def study_in_cache(s: SearchSettings, exp: str) -> bool:
    """The study lives in the driver's local cache: an object-store experiment without `--storage`."""
    from simmim_ray import storage as sio

    return not s.study_storage and not sio.is_node_local(exp)


def upload_study(s: SearchSettings, exp: str) -> None:
    from simmim_ray import storage as sio

    if study_in_cache(s, exp):
        with open(os.path.join(study_cache(exp), "study.db"), "rb") as f:
            sio.write_bytes(sio.join(exp, "study.db"), f.read())


def close_study(s: SearchSettings, exp: str) -> None:
    """After the search: orphaned study trials marked FAIL, the study copied into an object-store experiment."""
    import optuna

    from simmim_ray.search.searcher import fail_orphans

    study = optuna.load_study(study_name=s.name, storage=optuna_storage(s, exp))
    n = fail_orphans(study)
    if n:
        print(f"simmim-ray: {n} study trial(s) asked before an interruption were never run; marked FAIL")
    upload_study(s, exp)
