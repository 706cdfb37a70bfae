"""The terminal's one line per ended trial, and the one-line reason of an errored trial. Pure Python."""
from __future__ import annotations

import math
import re

from simmim_ray.metrics import EPOCH, VAL_ACCURACY
from simmim_ray.search.record.ledger import COMPLETE, PRUNED


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def progress_line(done: int, settings, trial_id: str, status: str, config: dict, result: dict,
                  error: str = "") -> str:
    """`[done/trials] trial status key=value ... | outcome`; `settings`: the search's SearchSettings."""
    params = " ".join(f"{k.split('.')[-1]}={_fmt(v)}" for k, v in config.items())
    if status == COMPLETE:
        acc, size = result.get(VAL_ACCURACY, math.nan), result.get(settings.size_metric, math.nan)
        mark = "feasible" if acc >= settings.target_accuracy else "below target"
        tail = f"acc={acc:.3f} {settings.size_metric}={size:,.0f} [{mark}]"
    elif status == PRUNED:
        tail = (f"stopped early at epoch {result.get(EPOCH, '?')} ({settings.asha_metric}="
                f"{_fmt(result.get(settings.asha_metric, math.nan))})")
    else:
        tail = f"ERROR: {error}"
    return f"[{done}/{settings.trials}] {trial_id} {status:8s} {params} | {tail}"


def error_reason(error_file: str | None) -> str:
    """The final exception of a trial's error file, one line (e.g. `NonFiniteLoss: non-finite loss ...`)."""
    try:
        with open(error_file) as f:
            text = f.read()
    except (OSError, TypeError):
        return "unknown error (no error file)"
    return summarise_error(text)


def summarise_error(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    heads = [i for i, ln in enumerate(lines) if re.match(r"^[\w.]*(Error|Exception|Loss)\b[^ ]*:", ln)]
    if not heads:
        return (lines[-1] if lines else "unknown error")[:300]
    i = heads[-1]
    msg = lines[i]
    if msg.endswith(":") and i + 1 < len(lines):
        msg += " " + lines[i + 1]
    return msg[:300]
