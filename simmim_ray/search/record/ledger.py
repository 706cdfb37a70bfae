"""The experiment's ledger: one append-only record of what happened to it, as JSON lines. No Ray.

An event is one JSON object: `{"event": TYPE, "time": unix seconds, **fields}`; ledger_schema.py holds each type's
fields and rules. Events live under <experiment>/ledger/ in one file per stream: a search trial's events in
`<trial_id>.jsonl`, every other event in `<event type>.jsonl`. So each file has one writer, and on an object store
(no append: each append rewrites the object) an append rewrites one small file, not the experiment's whole history.
Readers merge the streams by time.

Reading never fails on what a file holds: a line cut by a kill mid-write is skipped quietly (the next append starts
a new line), and any other line that is not an event passing the schema is skipped with one warning naming the file,
the line and the rule (a hand-edited or damaged line costs that event, not the experiment's report). Only regular
files are read; anything else named *.jsonl is skipped with a warning. A ledger/ that is no directory of the
experiment (a link loop, a link out of it, a file) is refused in one line.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Any, Callable

from simmim_ray.io import storage
from simmim_ray.errors import PATH_CHARS, UserError, excerpt, one_line
from simmim_ray.metrics import DONE
from simmim_ray.search.record import ledger_schema
from simmim_ray.search.record.ledger_schema import (BASELINE, COMPLETE, CONFIRMATION, ERROR, INTERRUPTED, NAME_RE,
                                                    PRUNED, RUNNING, SEARCH_STARTED, STATUSES, TRIAL_ENDED,
                                                    TRIAL_EVENTS, TRIAL_RESULT, TRIAL_STARTED)

__all__ = ["BASELINE", "COMPLETE", "CONFIRMATION", "ERROR", "INTERRUPTED", "PRUNED", "RUNNING", "SEARCH_STARTED",
           "STATUSES", "TRIAL_ENDED", "TRIAL_EVENTS", "TRIAL_RESULT", "TRIAL_STARTED", "Ledger", "read_events",
           "legacy_events"]

Warn = Callable[[str], None]


def warn_stderr(message: str) -> None:
    # stderr: `report --json` prints its answer on stdout
    print(f"simmim-ray: warning: {one_line(message)}", file=sys.stderr, flush=True)


class Ledger:
    """`uri`: the ledger directory. `legacy`: trials.jsonl of an experiment written before the ledger existed,
    read (never written) as its oldest trial events. `warn`: where a skipped line is told (each line once)."""

    def __init__(self, uri: str, legacy: str = "", warn: Warn = warn_stderr) -> None:
        self.uri, self.legacy = uri, legacy
        self._warn_to, self._warned = warn, set()

    def _warn(self, message: str) -> None:
        if message not in self._warned:  # the same ledger is read several times by one command
            self._warned.add(message)
            self._warn_to(message)

    # ---- writing --------------------------------------------------------------------------------------------
    def append(self, event_type: str, **fields: Any) -> dict:
        """Appends one event; returns it. Trial events need `trial_id`."""
        if not isinstance(event_type, str) or not NAME_RE.fullmatch(event_type):
            raise ValueError(f"ledger event type must be a name ([A-Za-z0-9_.-]+), but got {event_type!r}")
        if event_type in TRIAL_EVENTS and "trial_id" not in fields:
            raise ValueError(f"ledger event {event_type!r} needs a trial_id")
        event = {"event": event_type, "time": time.time(), **fields}
        line = json.dumps(_plain(event), default=str, allow_nan=False)
        storage.append_line(self._stream(event_type, fields.get("trial_id")), line)
        return event

    def _stream(self, event_type: str, trial_id: Any) -> str:
        name = str(trial_id) if event_type in TRIAL_EVENTS else event_type
        if not NAME_RE.fullmatch(name):
            raise ValueError(f"ledger stream name must match [A-Za-z0-9_.-]+, but got {name!r}")
        return storage.join(self.uri, f"{name}.jsonl")

    # ---- reading --------------------------------------------------------------------------------------------
    def events(self, event_type: str | None = None, **match: Any) -> list[dict]:
        """Every event (of one type; whose fields equal `match`, e.g. `trial_id=...`), oldest first."""
        streams = self._streams()
        if event_type is not None and event_type not in TRIAL_EVENTS:
            streams = [n for n in streams if n == f"{event_type}.jsonl"]
        merged = []
        for name in streams:
            merged += [(e["time"], name, i, e)
                       for i, e in enumerate(read_events(storage.join(self.uri, name), self._warn))]
        if self.legacy:  # older than any event here (an old experiment resumed by this version has both)
            merged += [(0, "", i, e) for i, e in enumerate(legacy_events(self.legacy, self._warn))]
        merged.sort(key=lambda t: t[:3])
        return [e for *_, e in merged if event_type in (None, e["event"])
                and all(e.get(k) == v for k, v in match.items())]

    def _streams(self) -> list[str]:
        """The ledger's files; anything else named *.jsonl is skipped with a warning."""
        self._check_dir()
        names = []
        for name, kind in storage.entries(self.uri):
            if not name.endswith(".jsonl"):
                continue
            if kind != "a regular file":  # a pipe would block the read, a device never end it
                self._warn(f"{storage.join(self.uri, name)} is {kind}, but a ledger file must be a regular file; "
                           f"skipped")
                continue
            names.append(name)
        return names

    def _check_dir(self) -> None:
        """A local ledger/ must be a directory inside its experiment: a link loop would read as an empty ledger
        (a finished search reported as "0 trials"), and a link out of the experiment reads another one."""
        if not storage.is_node_local(self.uri):
            return
        path = storage.resolve_storage(self.uri)[1]
        shown = excerpt(path, PATH_CHARS)
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            if os.path.islink(path):
                raise UserError(f"{shown} links to {excerpt(os.readlink(path), PATH_CHARS)}, which does not "
                                f"exist; the ledger must be a directory of the experiment") from None
            return  # no event yet
        except OSError as e:  # ELOOP: a link to itself, or a cycle of links
            raise UserError(f"{shown} cannot be read as the ledger ({e.strerror}); the ledger must be a directory "
                            f"of the experiment") from None
        kind = storage.file_kind(mode)
        if kind != "a directory":
            raise UserError(f"{shown} is {kind}; the ledger must be a directory of the experiment")
        home = os.path.realpath(os.path.dirname(path))
        real = os.path.realpath(path)
        if os.path.commonpath([home, real]) != home:
            raise UserError(f"{shown} links out of the experiment (to {excerpt(real, PATH_CHARS)}); the ledger "
                            f"must be a directory of the experiment")

    def trial_events(self, trial_id: str) -> list[dict]:
        """One trial's events (its stream only: what a trial function can afford to read)."""
        self._check_dir()
        uri = self._stream(TRIAL_STARTED, trial_id)
        old = ([e for e in legacy_events(self.legacy, self._warn) if e["trial_id"] == trial_id]
               if self.legacy else [])
        return old + (read_events(uri, self._warn) if storage.exists(uri) else [])

    def final_result(self, trial_id: str) -> dict | None:
        """The trial's final report (it carries `done`), if one was recorded: a trial re-launched after a driver
        kill reports it again instead of training again."""
        final = None
        for e in self.trial_events(trial_id):
            if e["event"] == TRIAL_RESULT and e["result"].get(DONE):
                final = e["result"]
        return final

    def latest(self, event_type: str, **match: Any) -> dict | None:
        """The newest event of a type whose fields equal `match` (e.g. `latest(TRIAL_ENDED, trial_id=t)`)."""
        found = self.events(event_type, **match)
        return found[-1] if found else None


def _plain(value: Any) -> Any:
    """`value` as JSON holds it: a number that is not finite becomes null (JSON has no NaN; the schema's numbers
    are finite), a numpy or torch scalar its Python number."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)) and getattr(value, "ndim", None) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _cut_short(text: str, err: json.JSONDecodeError) -> bool:
    """A line a kill cut mid-write: an event's start whose JSON stops in an open string or in its last few
    characters (a number, a literal or a nesting left unfinished)."""
    return text.startswith("{") and (err.msg.startswith("Unterminated string") or err.pos >= len(text) - 8)


def parse_line(raw: bytes) -> tuple[dict | None, str | None]:
    """-> (the event, None), (None, the rule the line breaks), or (None, None) for a line cut by a kill."""
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError as e:
        return None, f"a ledger line must be UTF-8 JSON, but byte {e.start} is not UTF-8"
    try:
        event = json.loads(text)
    except json.JSONDecodeError as e:
        return None, (None if _cut_short(text, e) else
                      f"a ledger line must be an event (a JSON object), but got {excerpt(text)}")
    except (ValueError, RecursionError) as e:  # an int of more than 4,300 digits; nesting past the recursion limit
        why = "nested too deeply" if isinstance(e, RecursionError) else str(e).split(":")[0]
        return None, f"a ledger line must be an event (a JSON object), but it is not JSON Python reads ({why})"
    return (event, None) if (rule := ledger_schema.problem(event)) is None else (None, rule)


def _numbered_lines(uri: str, warn: Warn) -> list[tuple[int, bytes]]:
    """(line number, bytes) of every non-blank line of one ledger file; a file that cannot be read (a pipe, a
    directory, gone) gives none, with a warning."""
    try:
        data = storage.read_bytes(uri)
    except OSError as e:
        warn(f"{uri} cannot be read ({e.strerror or e}); its events are skipped")
        return []
    return [(n, raw) for n, raw in enumerate(data.split(b"\n"), 1) if raw.strip()]


def read_events(uri: str, warn: Warn = warn_stderr) -> list[dict]:
    """The events of one ledger file that pass the schema; every other line is skipped, with a warning unless a
    kill cut it. A file that cannot be read (a pipe, a directory, gone) is skipped with a warning."""
    out = []
    for n, raw in _numbered_lines(uri, warn):
        event, rule = parse_line(raw)
        if event is not None:
            out.append(event)
        elif rule is not None:
            warn(f"{uri} line {n}: {rule}; line skipped")
    return out


def legacy_events(uri: str, warn: Warn = warn_stderr) -> list[dict]:
    """trials.jsonl of an older experiment (one line per ended trial: config, status, last result) as events,
    each passing the schema (a line that does not is skipped with a warning)."""
    if not storage.exists(uri):
        return []
    out = []
    for n, raw in _numbered_lines(uri, warn):
        try:
            e = json.loads(raw.decode("utf-8", errors="replace"))
        except (ValueError, RecursionError):  # the log of an older version: a cut line was its last
            continue
        if not isinstance(e, dict) or not isinstance(e.get("trial_id"), str):
            continue
        events = _legacy(e)
        rule = next((r for ev in events if (r := ledger_schema.problem(ev)) is not None), None)
        if rule is None:
            out += events
        else:
            warn(f"{uri} line {n}: {rule}; line skipped")
    return out


def _legacy(e: dict) -> list[dict]:
    name, result = e["trial_id"], e.get("result") or {}
    out = []
    if "config" in e:
        out.append({"event": TRIAL_STARTED, "time": 0, "trial_id": name, "config": e["config"]})
    if result:
        out.append({"event": TRIAL_RESULT, "time": 0, "trial_id": name, "result": result})
    metrics = result if isinstance(result, dict) else {}
    out.append({"event": TRIAL_ENDED, "time": 0, "trial_id": name, "status": e.get("status", ERROR),
                "metrics": result, "checkpoint_path": metrics.get("checkpoint_path", ""), "error": e.get("error", ""),
                "epochs": e.get("epochs", 0), "wall_s": e.get("wall_s", 0.0)})
    return out
