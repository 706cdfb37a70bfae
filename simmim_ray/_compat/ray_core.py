"""Ray core's private pieces: the internal KV store, `ray.init`'s temp dir, and Ray's version-mismatch error."""
from __future__ import annotations

import re

from simmim_ray._compat.probe import missing as _missing

KV_NAMESPACE = "simmim_ray"


def kv_put(key: str, value: bytes) -> None:
    from ray.experimental import internal_kv

    internal_kv._internal_kv_put(key, value, namespace=KV_NAMESPACE)


def kv_get(key: str) -> bytes | None:
    from ray.experimental import internal_kv

    return internal_kv._internal_kv_get(key, namespace=KV_NAMESPACE)


def kv_del(key: str, prefix: bool = False) -> None:
    from ray.experimental import internal_kv

    internal_kv._internal_kv_del(key, del_by_prefix=prefix, namespace=KV_NAMESPACE)


def init_local(temp_dir: str | None = None, **kwargs) -> None:
    """`ray.init` starting a local instance; `temp_dir` (sockets, logs) has no public argument."""
    import ray

    ray.init(_temp_dir=temp_dir, **kwargs)


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
    import ray

    return "another version", ray.__version__


# what the lean path needs from Ray core (probe.check arguments); each has a test in tests/test_compat.py
CHECKS = (("ray.experimental.internal_kv", "_internal_kv_put", ("key", "value", "namespace")),
          ("ray.experimental.internal_kv", "_internal_kv_get", ("key", "namespace")),
          ("ray.experimental.internal_kv", "_internal_kv_del", ("key", "del_by_prefix", "namespace")))


def missing() -> list[str]:
    return _missing(*CHECKS)
