"""Ray core's private pieces: the internal KV store, `ray.init`'s temp dir, Ray's version-mismatch error and its
CPU count."""
from __future__ import annotations

import os
import re

from simmim_ray._compat.probe import missing as _missing

KV_NAMESPACE = "simmim_ray"


def kv_put(key: str, value: bytes) -> None:
    from ray.experimental import internal_kv  # Ray on use: the CLI imports this module at startup

    internal_kv._internal_kv_put(key, value, namespace=KV_NAMESPACE)


def kv_get(key: str) -> bytes | None:
    from ray.experimental import internal_kv  # Ray on use: the CLI imports this module at startup

    return internal_kv._internal_kv_get(key, namespace=KV_NAMESPACE)


def kv_del(key: str, prefix: bool = False) -> None:
    from ray.experimental import internal_kv  # Ray on use: the CLI imports this module at startup

    internal_kv._internal_kv_del(key, del_by_prefix=prefix, namespace=KV_NAMESPACE)


def init_local(temp_dir: str | None = None, **kwargs) -> None:
    """`ray.init` starting a local instance; `temp_dir` (sockets, logs) has no public argument."""
    import ray  # Ray on use: the CLI imports this module at startup

    ray.init(_temp_dir=temp_dir, **kwargs)


def local_cpus() -> float:
    """CPUs a Ray started on this machine will offer, counted the way Ray counts them (cgroup CPU limits included);
    without Ray's helper, the CPUs this process may run on."""
    try:
        from ray._private.utils import get_num_cpus  # private; Ray on use: the CLI imports this module at startup

        return float(get_num_cpus(override_docker_cpu_warning=True))
    except Exception:  # noqa: BLE001 - a private helper: any other Ray layout falls back
        return float(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


# Ray's check_version_info: "Version mismatch: The cluster was started with:\n    Ray: A\n    Python: ...\n
# This process on ... was started with:\n    Ray: B\n ..."
_VERSIONS = re.compile(r"Ray:\s*(\S+)")


def version_mismatch(error: BaseException) -> tuple[str, str] | None:
    """(cluster's Ray, this process's Ray) when `error` is Ray's refusal to join a cluster of another version."""
    text = str(error)
    if "Version mismatch" not in text:
        return None
    found = _VERSIONS.findall(text)
    if len(found) >= 2:
        return found[0], found[1]
    import ray  # Ray on use: the CLI imports this module at startup

    return "another version", ray.__version__


# what the lean path needs from Ray core (probe.check arguments); each has a test in tests/unit/_compat/test_compat.py
CHECKS = (("ray.experimental.internal_kv", "_internal_kv_put", ("key", "value", "namespace")),
          ("ray.experimental.internal_kv", "_internal_kv_get", ("key", "namespace")),
          ("ray.experimental.internal_kv", "_internal_kv_del", ("key", "del_by_prefix", "namespace")))


def missing() -> list[str]:
    return _missing(*CHECKS)
