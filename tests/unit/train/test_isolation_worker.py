"""What a search trial's workers run never reads the test split (the whole search on Ray:
tests/scenarios/test_isolation.py)."""
from __future__ import annotations

import pytest
from torch.utils.data import Dataset

from simmim_ray.metrics import TEST_ACCURACY


class Untouchable(Dataset):
    """Stands in for the test split: any read fails."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        raise AssertionError("a search trial read the test split")


def test_a_search_trial_never_reads_the_test_split(tiny_cfg):
    """What a search trial's workers run (train/trial_loop.py): pre-training epochs, the per-epoch proxy and the final
    evaluation on ("val",), the splits a search trial measures (train/launch.py's default)."""
    import inspect

    from simmim_ray.data.splits import build_splits
    from simmim_ray.engine.run import PretrainRun
    from simmim_ray.train.launch import make_trainer

    splits = build_splits(tiny_cfg)
    splits.test = Untouchable(len(splits.test))
    run = PretrainRun(tiny_cfg.with_overrides({"train.epochs": 1, "eval.epochs": 1}), splits=splits)
    run.train_epoch()
    run.proxy()
    out = run.final_eval(splits=inspect.signature(make_trainer).parameters["eval_splits"].default)
    assert TEST_ACCURACY not in out and out["val_count"] == len(splits.val)
    with pytest.raises(AssertionError, match="read the test split"):
        run.final_eval(splits=("test",))  # the guard works
