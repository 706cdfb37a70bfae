"""The terminal's progress line per ended trial and the one-line error reason (pure Python)."""
from __future__ import annotations

from simmim_ray.metrics import EPOCH, PARAMS, PROXY_KNN, VAL_ACCURACY
from simmim_ray.search.progress import progress_line, summarise_error
from simmim_ray.search.settings import SearchSettings

S = SearchSettings(space_path="s", name="n", root="/r", trials=4, target_accuracy=0.5)


def test_progress_lines_say_outcome_and_feasibility():
    cfg = {"model.embed_dim": 24, "mask.ratio": 0.55}
    line = progress_line(2, S, "trial_1", "complete", cfg, {VAL_ACCURACY: 0.75, PARAMS: 12345})
    assert line == "[2/4] trial_1 complete embed_dim=24 ratio=0.55 | acc=0.750 params=12,345 [feasible]"
    assert "[below target]" in progress_line(1, S, "t", "complete", cfg, {VAL_ACCURACY: 0.4, PARAMS: 1})
    pruned = progress_line(3, S, "t", "pruned", cfg, {EPOCH: 2, PROXY_KNN: 0.3})
    assert pruned.endswith("| stopped early at epoch 2 (proxy_knn=0.3)")
    assert progress_line(4, S, "t", "error", cfg, {}, "NonFiniteLoss: x").endswith("| ERROR: NonFiniteLoss: x")


def test_error_reason_is_the_last_exception_line():
    text = ("Traceback (most recent call last):\n  File x\nray.exceptions.RayTaskError(NonFiniteLoss): boom\n"
            "  more\nsimmim_ray.engine.NonFiniteLoss: non-finite loss at step 3\n")
    assert summarise_error(text) == "simmim_ray.engine.NonFiniteLoss: non-finite loss at step 3"
    assert summarise_error("ValueError:\n  the reason\n") == "ValueError: the reason"
    assert summarise_error("") == "unknown error"
