"""No unpickling of an experiment's files that this machine's searches did not write (docs/security.md).

`Tuner.restore` unpickles Ray Tune's state in the experiment (tuner.pkl, experiment_state-*.json and
search_gen_state-*.json, which embed cloudpickle, searcher-state-*.pkl, and trials' *.pkl): a file replaced there
runs its code in the driver. So every such file Tune writes is recorded with a keyed digest (HMAC-SHA256 of its
path in the experiment and its bytes) in `<experiment>/trust/pickle_digests.json`, the key kept outside the experiment
(`$XDG_CONFIG_HOME/simmim-ray/experiment.key`, 0600), and `--resume` refuses a file whose digest is not recorded,
before Ray starts, unless `--trust-experiment` vouches for the experiment.

The record is written before Tune copies a file into the experiment (trust_callback.py), so a driver killed at any
moment leaves an experiment that verifies, except tuner.pkl: Tune writes it into the experiment itself when
the search starts, and a kill before it is recorded leaves it unrecorded: refused, with the way to accept it.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sys
import tempfile

import pyarrow.fs as pafs

from simmim_ray.io import storage
from simmim_ray.errors import UserError

# in a directory of its own: Tune copies the experiment's top-level *.json into its staging directory when it
# restores, and copies that directory back over the experiment at each save (a stale record would replace ours)
RECORD = "trust/pickle_digests.json"
TUNER_PKL = "tuner.pkl"
KEY_FILE = os.path.join("simmim-ray", "experiment.key")
KEY_BYTES = 32
# digests kept per file: an upload Tune started before a kill may not have replaced the previous version yet
KEEP = 4
# Tune's JSON state files that embed cloudpickle (its decoder runs them), beside every *.pkl
TUNE_STATE_JSON = ("experiment_state-", "search_gen_state-", "basic-variant-state-")
TRUST_FLAG = "--trust-experiment"


def key_path() -> str:
    """$XDG_CONFIG_HOME/simmim-ray/experiment.key; ~/.config when it is unset or relative (the XDG rule)."""
    base = os.environ.get("XDG_CONFIG_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, KEY_FILE)


def load_key(create: bool) -> bytes | None:
    """This user's key (made on first use when `create`); None when there is none and `create` is False."""
    path = key_path()
    if not os.path.exists(path):
        if not create:
            return None
        _create_key(path)
    st = os.stat(path)
    if st.st_mode & 0o077 or st.st_uid != os.getuid():
        raise UserError(f"{path}: the key that vouches for experiments' pickles must be yours and private "
                        f"(chmod 600 {path})")
    with open(path, "rb") as f:
        key = f.read(KEY_BYTES + 1)
    if len(key) != KEY_BYTES:
        raise UserError(f"{path}: must hold the {KEY_BYTES} bytes of a key this tool made, but it holds {len(key)}; "
                        f"remove it (a new key is made, and each experiment then needs {TRUST_FLAG} once)")
    return key


def _create_key(path: str) -> None:
    """Written whole to a private temporary file, then linked into place: a concurrent first use either makes the
    key or reads the one the other made, never half of one."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".experiment.key.")
    try:
        os.write(fd, secrets.token_bytes(KEY_BYTES))
        os.fsync(fd)
        os.close(fd)
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)


def tag(key: bytes, relpath: str, data: bytes) -> str:
    return hmac.new(key, relpath.encode() + b"\0" + data, hashlib.sha256).hexdigest()


def is_pickle(relpath: str) -> bool:
    """A file of the experiment that Tune unpickles (or may: every *.pkl)."""
    name = relpath.rsplit("/", 1)[-1]
    return name.endswith(".pkl") or ("/" not in relpath and name.endswith(".json") and name.startswith(TUNE_STATE_JSON))


def pickle_files(exp_uri: str) -> list[str]:
    """Paths (relative to the experiment, with /) of its pickle files: tuner.pkl (the first Tune reads), then
    sorted."""
    fs, root, _ = storage.resolve_storage(exp_uri)
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    rel = (i.path[len(root.rstrip("/")) + 1:] for i in infos if i.type == pafs.FileType.File)
    return sorted((r for r in rel if is_pickle(r)), key=lambda r: (r != TUNER_PKL, r))


def load_record(exp_uri: str) -> dict[str, list[str]]:
    """{relpath: recent digests}; empty when missing or unreadable (then nothing verifies: refused, not trusted)."""
    where = storage.join(exp_uri, RECORD)
    try:
        d = json.loads(storage.read_bytes(where).decode())
    except (FileNotFoundError, OSError, ValueError):
        return {}
    files = d.get("files") if isinstance(d, dict) else None
    if not isinstance(files, dict):
        return {}
    return {k: [t for t in v if isinstance(t, str)] for k, v in files.items() if isinstance(v, list)}


def save_record(exp_uri: str, record: dict[str, list[str]]) -> None:
    """Replaces the record whole: a kill mid-write leaves the old one (local: rename; object stores: one PUT)."""
    data = json.dumps({"version": 1, "files": record}, sort_keys=True).encode()
    if storage.is_node_local(exp_uri):
        path = storage.resolve_storage(storage.join(exp_uri, RECORD))[1]
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=f".{os.path.basename(path)}.")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    else:
        storage.write_bytes(storage.join(exp_uri, RECORD), data)


def add(record: dict[str, list[str]], relpath: str, digest: str) -> bool:
    """Records `digest` as the newest of `relpath`; -> whether the record changed."""
    seen = record.setdefault(relpath, [])
    if seen and seen[-1] == digest:
        return False
    if digest in seen:
        seen.remove(digest)
    seen.append(digest)
    del seen[:-KEEP]
    return True


def record_files(exp_uri: str, files: dict[str, bytes]) -> None:
    """Records {relpath: bytes} (files Tune wrote, or is about to copy, into the experiment)."""
    key = load_key(create=True)
    record = load_record(exp_uri)
    changed = [add(record, rel, tag(key, rel, data)) for rel, data in files.items()]
    if any(changed):
        save_record(exp_uri, record)


def record_experiment(exp_uri: str, only: tuple[str, ...] = ()) -> None:
    """Records the pickle files now in the experiment (`only`: just these relpaths)."""
    names = [r for r in pickle_files(exp_uri) if not only or r in only]
    record_files(exp_uri, {r: storage.read_bytes(storage.join(exp_uri, r)) for r in names})


def unverified(exp_uri: str) -> list[str]:
    """Pickle files of the experiment whose digest this machine's searches did not record."""
    key = load_key(create=False)
    record = load_record(exp_uri)
    bad = []
    for rel in pickle_files(exp_uri):
        digest = tag(key, rel, storage.read_bytes(storage.join(exp_uri, rel))) if key is not None else None
        if digest is None or not any(hmac.compare_digest(digest, t) for t in record.get(rel, ())):
            bad.append(rel)
    return bad


def verify(exp_uri: str, trusted: bool) -> None:
    """Before anything unpickles the experiment: refuses (one line naming the first file) pickles this machine's
    searches did not write; with `trusted` (--trust-experiment), warns once and records them as they are."""
    bad = unverified(exp_uri)
    if not bad:
        return
    more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
    first = storage.join(exp_uri, bad[0])
    if not trusted:
        raise UserError(f"--resume {exp_uri}: {first}{more} is not a pickle this machine's searches wrote (changed, "
                        f"copied from elsewhere, from an older simmim-ray, or written as a driver was killed) and "
                        f"Tune would run any code in it; if you trust this experiment, resume with {TRUST_FLAG}")
    print(f"simmim-ray: warning: {TRUST_FLAG}: unpickling {first}{more}, which this machine's searches did not "
          f"write; they are recorded as trusted from now on", file=sys.stderr, flush=True)
    record_experiment(exp_uri, only=tuple(bad))
