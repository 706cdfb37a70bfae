"""The experiment's ledger: one append-only record of what happened to it, as JSON lines. No Ray.

An event is one JSON object: `{"event": TYPE, "time": unix seconds, **fields}`. Events live under
<experiment>/ledger/ in one file per stream: a search trial's events in `<trial_id>.jsonl`, every other event in
`<event type>.jsonl`. So each file has one writer, and on an object store (no append: each append rewrites the
object) an append rewrites one small file, not the experiment's whole history. Readers merge the streams by time.

A line cut by a kill mid-write is skipped (the next append starts a new line); any other line that is not an
event is refused in one line naming the file, so a damaged ledger is never read as a shorter one.
"""
from __future__ import annotations

import json
import re
import time
from typing import Any

from simmim_ray import storage as sio
from simmim_ray.errors import UserError
from simmim_ray.metrics import DONE

# ---- event types ----------------------------------------------------------------------------------------------
SEARCH_STARTED = "search_started"  # settings (dict), inputs ({file name: sha256}), resumed (bool)
TRIAL_STARTED = "trial_started"  # trial_id, config (searched keys -> values)
TRIAL_RESULT = "trial_result"  # trial_id, result (one report: metrics, epoch, done, checkpoint_path)
TRIAL_ENDED = "trial_ended"  # trial_id, status (STATUSES), metrics (final report), checkpoint_path, error, epochs,
#                              wall_s
# Reserved for the stages after a search; their fields are theirs (documented where they are written).
CONFIRMATION = "confirmation"
BASELINE = "baseline"
TRIAL_EVENTS = (TRIAL_STARTED, TRIAL_RESULT, TRIAL_ENDED)

# ---- trial statuses (TRIAL_ENDED's `status`; RUNNING: started, not ended) -----------------------------------
COMPLETE, PRUNED, ERROR, RUNNING = "complete", "pruned", "error", "running"
# started by a driver that was killed, and not continued by the search that resumed it (Tune had not saved it)
INTERRUPTED = "interrupted"
STATUSES = (COMPLETE, PRUNED, ERROR, INTERRUPTED)

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class Ledger:
    """`uri`: the ledger directory. `legacy`: trials.jsonl of an experiment written before the ledger existed,
    read (never written) as its oldest trial events."""

    def __init__(self, uri: str, legacy: str = "") -> None:
        self.uri, self.legacy = uri, legacy

    # ---- writing --------------------------------------------------------------------------------------------
    def append(self, event_type: str, **fields: Any) -> dict:
        """Appends one event; returns it. Trial events need `trial_id`."""
        if not isinstance(event_type, str) or not _NAME.match(event_type):
            raise ValueError(f"ledger event type must be a name ([A-Za-z0-9_.-]+), but got {event_type!r}")
        if event_type in TRIAL_EVENTS and "trial_id" not in fields:
            raise ValueError(f"ledger event {event_type!r} needs a trial_id")
        event = {"event": event_type, "time": time.time(), **fields}
        line = json.dumps(event, default=str, allow_nan=True)
        sio.append_line(self._stream(event_type, fields.get("trial_id")), line)
        return event

    def _stream(self, event_type: str, trial_id: Any) -> str:
        name = str(trial_id) if event_type in TRIAL_EVENTS else event_type
        if not _NAME.match(name):
            raise ValueError(f"ledger stream name must match [A-Za-z0-9_.-]+, but got {name!r}")
        return sio.join(self.uri, f"{name}.jsonl")

    # ---- reading --------------------------------------------------------------------------------------------
    def events(self, event_type: str | None = None, **match: Any) -> list[dict]:
        """Every event (of one type; whose fields equal `match`, e.g. `trial_id=...`), oldest first."""
        streams = [n for n in sio.listdir(self.uri) if n.endswith(".jsonl")]
        if event_type is not None and event_type not in TRIAL_EVENTS:
            streams = [n for n in streams if n == f"{event_type}.jsonl"]
        merged = []
        for name in streams:
            merged += [(e.get("time", 0), name, i, e) for i, e in enumerate(read_events(sio.join(self.uri, name)))]
        if self.legacy:  # older than any event here (an old experiment resumed by this version has both)
            merged += [(0, "", i, e) for i, e in enumerate(legacy_events(self.legacy))]
        merged.sort(key=lambda t: t[:3])
        return [e for *_, e in merged if event_type in (None, e["event"])
                and all(e.get(k) == v for k, v in match.items())]

    def trial_events(self, trial_id: str) -> list[dict]:
        """One trial's events (its stream only: what a trial function can afford to read)."""
        uri = self._stream(TRIAL_STARTED, trial_id)
        old = [e for e in legacy_events(self.legacy) if e.get("trial_id") == trial_id] if self.legacy else []
        return old + (read_events(uri) if sio.exists(uri) else [])

    def final_result(self, trial_id: str) -> dict | None:
        """The trial's final report (it carries `done`), if one was recorded: a trial re-launched after a driver
        kill reports it again instead of training again."""
        final = None
        for e in self.trial_events(trial_id):
            if e["event"] == TRIAL_RESULT and e.get("result", {}).get(DONE):
                final = e["result"]
        return final

    def latest(self, event_type: str, **match: Any) -> dict | None:
        """The newest event of a type whose fields equal `match` (e.g. `latest(TRIAL_ENDED, trial_id=t)`)."""
        found = self.events(event_type, **match)
        return found[-1] if found else None


def read_events(uri: str) -> list[dict]:
    """The events of one ledger file; lines cut by a kill are skipped, anything else that is not an event is a
    UserError naming the file and line."""
    try:
        text = sio.read_bytes(uri).decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{uri}: a ledger file must be UTF-8 JSON lines, but byte {e.start} is not UTF-8") from None
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            if line.startswith("{"):  # cut by a kill mid-write: the event never happened
                continue
            raise UserError(f"{uri} line {n}: every line must be a ledger event (a JSON object), "
                            f"but got {line[:40]!r}") from None
        if not isinstance(event, dict) or not isinstance(event.get("event"), str):
            raise UserError(f"{uri} line {n}: every line must be a JSON object with an `event` name, "
                            f"but got {line[:40]!r}")
        out.append(event)
    return out


def legacy_events(uri: str) -> list[dict]:
    """trials.jsonl of an older experiment (one line per ended trial: config, status, last result) as events."""
    if not sio.exists(uri):
        return []
    out = []
    for e in read_legacy_lines(uri):
        name, result = e.get("trial_id"), e.get("result") or {}
        if not isinstance(name, str):
            continue
        if "config" in e:
            out.append({"event": TRIAL_STARTED, "trial_id": name, "config": e["config"]})
        if result:
            out.append({"event": TRIAL_RESULT, "trial_id": name, "result": result})
        out.append({"event": TRIAL_ENDED, "trial_id": name, "status": e.get("status", ERROR), "metrics": result,
                    "checkpoint_path": result.get("checkpoint_path", ""), "error": e.get("error", ""),
                    "epochs": e.get("epochs", 0), "wall_s": e.get("wall_s", 0.0)})
    return out


def read_legacy_lines(uri: str) -> list[dict]:
    out = []
    for line in sio.read_bytes(uri).decode("utf-8", errors="replace").splitlines():
        try:
            e = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(e, dict):
            out.append(e)
    return out
