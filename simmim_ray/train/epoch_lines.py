"""What `simmim-ray train` prints: the data it reads, one line per epoch, the final result.

The workers' own output stays in Ray's session logs (the driver starts Ray with log_to_driver=False): every rank
would print it, prefixed and coloured by Ray, beside Ray Train's INFO line for each report (the whole metrics dict).
Instead rank 0 puts each epoch's metrics on a Ray queue (`EpochFeed`) and the driver prints one line per epoch.
The formatters are pure Python; numbers are written one way everywhere (counts with thousands separators).
"""
from __future__ import annotations

import math
import threading
import time

from simmim_ray.metrics import (EPOCH, FLOPS, IMAGES_PER_S, LOSS, PARAMS, PROXY_KNN, TEST_ACCURACY, TRAIN_SECONDS,
                                VAL_ACCURACY)

SPLITS = ("pretrain", "labeled", "val", "test")


def count(n) -> str:
    """A count as every line of ours writes it: 138,368."""
    return f"{int(n):,}"


def duration(seconds: float) -> str:
    """`42s`, `3m05s`, `1h02m`."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def data_summary(summary: dict) -> str:
    """`digits: pretrain 969, labeled 110, val 359, test 359 images` (data/check.py's summary), classes if known."""
    sizes = ", ".join(f"{k} {count(summary[k])}" for k in SPLITS if k in summary)
    classes = f", {summary['classes']} classes" if "classes" in summary else ""
    return f"{summary.get('source', '?')} ({sizes} images{classes})"


def epoch_line(m: dict, epochs: int, eta_s: float | None) -> str:
    """`epoch 1/20  loss 0.7790  proxy 0.412  79 images/s  ETA 3m05s`."""
    parts = [f"epoch {m.get(EPOCH, '?')}/{epochs}"]
    if isinstance(m.get(LOSS), (int, float)):
        parts.append(f"loss {m[LOSS]:.4f}")
    if isinstance(m.get(PROXY_KNN), (int, float)):
        parts.append(f"proxy {m[PROXY_KNN]:.3f}")
    if isinstance(m.get(IMAGES_PER_S), (int, float)):
        parts.append(f"{m[IMAGES_PER_S]:,.0f} images/s")
    if eta_s is not None:
        parts.append(f"ETA {duration(eta_s)}")
    return "  ".join(parts)


def final_line(m: dict) -> str:
    """`final: val_accuracy 0.9120, test_accuracy 0.9050, params 138,368, flops 4,850,688, loss 0.5816, 79
    images/s, 39s of training`."""
    parts = [f"{k} {m[k]:.4f}" for k in (VAL_ACCURACY, TEST_ACCURACY) if isinstance(m.get(k), (int, float))]
    parts += [f"{k} {count(m[k])}" for k in (PARAMS, FLOPS) if isinstance(m.get(k), (int, float))]
    if isinstance(m.get(LOSS), (int, float)):
        parts.append(f"loss {m[LOSS]:.4f}")
    if isinstance(m.get(IMAGES_PER_S), (int, float)):
        parts.append(f"{m[IMAGES_PER_S]:,.0f} images/s")
    if isinstance(m.get(TRAIN_SECONDS), (int, float)):
        parts.append(f"{duration(m[TRAIN_SECONDS])} of training")
    return "final: " + ", ".join(parts)


class Eta:
    """Time left for the pre-training epochs, from the pace of the epochs seen so far (the first one's start-up
    included until a second arrives)."""

    def __init__(self, epochs: int, started: float):
        self.epochs, self.started, self.first = epochs, started, None

    def after(self, epoch: int, now: float, resumed_from: int = 0) -> float:
        """Seconds left after `epoch` ended at `now`; `resumed_from`: the epoch a resumed run started after."""
        if self.first is None:
            self.first = (epoch, now)
            per = (now - self.started) / max(1, epoch - resumed_from)
        else:
            per = (now - self.first[1]) / max(1, epoch - self.first[0])
        return per * max(0, self.epochs - epoch)


class EpochPrinter:
    """The driver's lines for rank 0's epoch metrics, as they arrive: a resumed run says where it resumed."""

    def __init__(self, epochs: int, out=None, started: float | None = None):
        self.epochs, self.out = epochs, out
        self._eta = Eta(epochs, time.time() if started is None else started)

    def show(self, m: dict, now: float | None = None) -> None:
        if m.get("resumed_from_epoch") and m.get(EPOCH) == m["resumed_from_epoch"] + 1:
            print(f"resumed at epoch {m['resumed_from_epoch']} from the latest checkpoint", file=self.out,
                  flush=True)
        epoch = m.get(EPOCH, 0)
        now = time.time() if now is None else now
        eta = self._eta.after(epoch, now, m.get("resumed_from_epoch") or 0) if epoch < self.epochs else None
        print(epoch_line(m, self.epochs, eta), file=self.out, flush=True)


class EpochFeed(EpochPrinter):
    """The queue rank 0 puts each epoch's metrics on, and the driver thread that prints them as they arrive."""

    def __init__(self, epochs: int, out=None):
        from ray.util.queue import Queue  # Ray once a run starts: `simmim-ray train` imports this module at startup

        super().__init__(epochs, out)
        self.queue = Queue(actor_options={"num_cpus": 0})  # a zero-CPU actor: it never takes a worker's place
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="simmim-epoch-lines", daemon=True)

    def __enter__(self) -> EpochFeed:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        from ray.util.queue import Empty  # Ray on use, as in __init__

        while True:  # what arrived after the thread's last look
            try:
                self.show(self.queue.get_nowait())
            except (Empty, Exception):  # noqa: BLE001 - the queue's actor gone with Ray: nothing more to show
                break
        try:
            self.queue.shutdown()
        except Exception:  # noqa: BLE001
            pass

    def _run(self) -> None:
        from ray.util.queue import Empty  # Ray on use, as in __init__

        while not self._stop.is_set():
            try:
                self.show(self.queue.get(timeout=0.5))
            except Empty:
                continue
            except Exception:  # noqa: BLE001 - Ray shut down under the thread (a signal): the driver reports it
                return


def tell(queue, metrics: dict) -> None:
    """Rank 0's side: this epoch's numbers on the driver's queue; a lost line never stops training."""
    keep = {k: v for k, v in metrics.items() if isinstance(v, (int, float, bool, str))}
    try:
        queue.put_nowait(keep)
    except Exception:  # noqa: BLE001 - the driver is gone or its queue full: the run itself goes on
        pass
