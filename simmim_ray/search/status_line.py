"""The search's status between finished trials: what runs, what ended, how much budget is spent, the best feasible
size so far, elapsed time and an estimate of what is left.

On a terminal it is one line redrawn in place (carriage return, erase line) under the per-trial lines; in a log
(stdout not a TTY) it is a plain line, at most once a minute and only when something changed, so a long search
still shows it is alive without a line per second. `format_status` and `Status` are pure Python.
"""
from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass, field

from simmim_ray.search.record.ledger import COMPLETE, ERROR, INTERRUPTED, PRUNED
from simmim_ray.train import epoch_lines

PLAIN_PERIOD_S = 60.0  # a log gets a status line at most this often
TTY_PERIOD_S = 1.0  # the terminal's line is redrawn at most this often (its clock moves)
ERASE = "\r\x1b[2K"  # back to the line's start, erase it


def duration(seconds: float) -> str:
    return epoch_lines.duration(seconds)


@dataclass
class Status:
    """What the driver knows of the search; `budget`: (total, unit) with unit "epochs" or "s", or None."""

    trials: int
    size_metric: str
    target: float
    budget: tuple[float, str] | None = None
    started: float = field(default_factory=time.time)
    ended: dict[str, str] = field(default_factory=dict)  # trial -> status
    spent_ended: float = 0.0  # budget units of ended trials
    running: dict[str, float] = field(default_factory=dict)  # trial -> budget units spent so far
    best: tuple[float, str] | None = None  # (size, trial) of the smallest feasible trial
    feasible: int = 0  # complete trials at or above the target
    spent_at_start: float | None = None  # what earlier drivers spent: the pace counts this driver's work
    ended_at_start: int = 0  # trials earlier drivers ended

    def spent(self, now: float | None = None) -> float:
        if self.budget and self.budget[1] == "s":  # a running trial's wall time so far
            now = time.time() if now is None else now
            return self.spent_ended + sum(now - t for t in self.running.values())
        return self.spent_ended + sum(self.running.values())

    def start(self, trial: str, now: float) -> None:
        self.running[trial] = now if self.budget and self.budget[1] == "s" else 0.0

    def epoch(self, trial: str, epoch: int) -> None:
        if trial in self.running and not (self.budget and self.budget[1] == "s"):
            self.running[trial] = float(epoch)

    def end(self, trial: str, status: str, epochs: int, wall_s: float, accuracy: float | None,
            size: float | None) -> None:
        self.running.pop(trial, None)
        self.ended[trial] = status
        self.spent_ended += (wall_s or 0.0) if self.budget and self.budget[1] == "s" else (epochs or 0)
        if status == COMPLETE and accuracy is not None and accuracy >= self.target and size is not None:
            self.feasible += 1
            if self.best is None or size < self.best[0]:
                self.best = (size, trial)

    def resumed(self) -> None:
        """What is known now was done by earlier drivers (a resumed search): the pace counts from here."""
        self.spent_at_start, self.ended_at_start = self.spent(), len(self.ended)

    def count(self, *statuses: str) -> int:
        return sum(1 for s in self.ended.values() if s in statuses)

    def eta(self, now: float) -> float | None:
        """Seconds left at this driver's pace: toward the budget when there is one, else toward the trial count."""
        elapsed = now - self.started
        if elapsed <= 0:
            return None
        if self.budget:
            base = self.spent_at_start or 0.0
            done, left = self.spent(now) - base, self.budget[0] - self.spent(now)
        else:
            done, left = float(len(self.ended) - self.ended_at_start), float(self.trials - len(self.ended))
        if done <= 0 or left < 0:
            return None
        return elapsed * left / done


def format_status(st: Status, now: float) -> str:
    """`running 2 | done 5/20 (2 pruned, 3 feasible) | budget 120/480 epochs (25%) | best feasible params 138,368
    (trial_x) | 3m05s elapsed, ETA 9m15s`."""
    parts = [f"running {len(st.running)}"]
    kinds = [f"{st.count(PRUNED)} pruned", f"{st.feasible} feasible"]
    if st.count(ERROR, INTERRUPTED):
        kinds.append(f"{st.count(ERROR, INTERRUPTED)} failed")
    parts.append(f"done {len(st.ended)}/{st.trials} ({', '.join(kinds)})")
    if st.budget:
        total, unit = st.budget
        spent = st.spent(now)
        shown = f"{duration(spent)}/{duration(total)}" if unit == "s" else f"{spent:,.0f}/{total:,.0f} epochs"
        parts.append(f"budget {shown} ({min(100.0, 100 * spent / total):.0f}%)" if total > 0 else f"budget {shown}")
    parts.append(f"best feasible {st.size_metric} {st.best[0]:,.0f} ({st.best[1]})" if st.best else
                 "no feasible trial yet")
    eta = st.eta(now)
    parts.append(f"{duration(now - st.started)} elapsed" + (f", ETA {duration(eta)}" if eta is not None else ""))
    return " | ".join(parts)


class StatusLine:
    """Writes `format_status` to `out`: redrawn in place on a TTY, a plain line now and then elsewhere."""

    def __init__(self, status: Status, out=None, tty: bool | None = None, period_s: float | None = None):
        self.status, self.out = status, out or sys.stdout
        self.tty = self.out.isatty() if tty is None else tty
        self.period = period_s if period_s is not None else (TTY_PERIOD_S if self.tty else PLAIN_PERIOD_S)
        # a log's first status line comes a period after the start, not beside the first trial's start
        self._last_time, self._last_text, self._shown = (0.0 if self.tty else time.time()), "", False

    def line(self, text: str) -> None:
        """A line of its own (a trial's end): above the status line on a TTY."""
        if self.tty and self._shown:
            self.out.write(ERASE)
            self._shown = False
        print(text, file=self.out, flush=True)
        try:
            self.refresh(force=self.tty)
        except Exception:  # noqa: BLE001 - the trial's line is out; the status is only a display
            pass

    def refresh(self, now: float | None = None, force: bool = False) -> None:
        now = time.time() if now is None else now
        if not force and now - self._last_time < self.period:
            return
        text = format_status(self.status, now)
        if self.tty:
            width = shutil.get_terminal_size((120, 20)).columns
            self.out.write(ERASE + text[: max(20, width - 1)])
            self.out.flush()
            self._shown = True
        elif text.split(" | ")[:-1] != self._last_text.split(" | ")[:-1]:  # something changed besides the clock
            print(f"status: {text}", file=self.out, flush=True)
        self._last_time, self._last_text = now, text

    def close(self) -> None:
        """Leaves the terminal on a fresh line (what the report prints next starts at its left edge)."""
        if self.tty and self._shown:
            self.out.write(ERASE)
            self.out.flush()
            self._shown = False
