"""Measured traces of search trials, for benchmarks/search_efficiency.py: what one trial of a configuration reports
epoch by epoch, what it costs, and what its confirmation finds, each measured once and kept on disk.

A trial here is the Train worker's loop without Ray around it (`PretrainRun`, world size 1, one torch thread, the
2-worker global batch): per epoch the proxy (`proxy_knn`) and the CPU seconds of the epoch and its proxy; at the end
the validation accuracy after the fine-tune and its CPU seconds. Training is deterministic for a configuration (the
trial's seed is the config's, not the search's), so a search that runs the same configuration again would see the
same numbers: the simulator replays the trace instead of training again. Confirmation re-seeds the fine-tune of the
trial's encoder (the service's default, `--confirm-reseed finetune`) and measures the test split, one seed at a time,
each kept with its CPU seconds.

Every trace is a JSON file named by a hash of the full configuration; a file lock per configuration lets two
processes share the directory without training the same configuration twice.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time

from simmim_ray.metrics import FLOPS, PARAMS, PROXY_KNN, TEST_ACCURACY, VAL_ACCURACY


def key(cfg) -> str:
    return hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


@contextlib.contextmanager
def locked(path: str):
    with open(path + ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _write(path: str, data: dict) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


class TraceStore:
    """Traces of one recipe's configurations in `root` (created); `splits`: the in-memory splits every trial shares."""

    def __init__(self, root: str, splits=None) -> None:
        self.root, self.splits = root, splits
        os.makedirs(root, exist_ok=True)
        self.trained = 0  # configurations this process trained (not read back)
        self.confirmed = 0  # confirmation seeds this process measured

    def _paths(self, cfg) -> tuple[str, str]:
        k = key(cfg)
        return os.path.join(self.root, k + ".json"), os.path.join(self.root, k + ".pt")

    def trial(self, cfg) -> dict:
        """{"epochs": [{proxy_knn, cpu_s}], "final": {val_accuracy, cpu_s}, params, flops}: measured or read."""
        path, state_path = self._paths(cfg)
        with locked(path):
            if os.path.exists(path):
                with open(path) as fh:
                    return json.load(fh)
            trace = self._measure(cfg, state_path)
            _write(path, trace)
            self.trained += 1
            return trace

    def confirmation(self, cfg, seed: int) -> dict:
        """{test_accuracy, val_accuracy, cpu_s}: the fine-tune of the trial's encoder with `seed`, on test."""
        path, state_path = self._paths(cfg)
        self.trial(cfg)
        with locked(path):
            with open(path) as fh:
                trace = json.load(fh)
            got = trace.setdefault("confirm", {}).get(str(seed))
            if got is None:
                got = trace["confirm"][str(seed)] = self._confirm(cfg, state_path, seed)
                _write(path, trace)
                self.confirmed += 1
            return got

    def _run(self, cfg):
        import torch

        from simmim_ray.engine.run import PretrainRun

        torch.set_num_threads(1)
        return PretrainRun(cfg, splits=self.splits)

    def _measure(self, cfg, state_path: str) -> dict:
        import torch

        run = self._run(cfg)
        epochs = []
        while run.epoch < cfg.train.epochs:
            c0 = time.process_time()
            run.train_epoch()
            proxy = run.proxy()[PROXY_KNN]
            epochs.append({PROXY_KNN: proxy, "cpu_s": time.process_time() - c0})
        torch.save(run.model.state_dict(), state_path)  # the encoder confirmation fine-tunes
        c0 = time.process_time()
        final = run.final_eval()
        size = run.size()
        return {"epochs": epochs, "final": {VAL_ACCURACY: final[VAL_ACCURACY], "cpu_s": time.process_time() - c0},
                PARAMS: size[PARAMS], FLOPS: size[FLOPS]}

    def _confirm(self, cfg, state_path: str, seed: int) -> dict:
        import torch

        run = self._run(cfg)
        run.model.load_state_dict(torch.load(state_path, weights_only=True))
        c0 = time.process_time()
        m = run.final_eval(splits=("val", "test"), seed=seed)
        return {TEST_ACCURACY: m[TEST_ACCURACY], VAL_ACCURACY: m[VAL_ACCURACY], "cpu_s": time.process_time() - c0}
