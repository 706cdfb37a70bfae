"""The lines `simmim-ray train` prints (train/epoch_lines.py): pure formatting, and the ETA from the epochs' pace."""
from __future__ import annotations

import pytest

from simmim_ray.train.epoch_lines import Eta, data_summary, duration, epoch_line, final_line


def test_data_summary_reads_as_words():
    assert data_summary({"source": "digits", "pretrain": 969, "labeled": 110, "val": 359, "test": 359}) == (
        "digits (pretrain 969, labeled 110, val 359, test 359 images)")
    assert data_summary({"source": "parquet", "classes": 10, "pretrain": 12000, "val": 1500}) == (
        "parquet (pretrain 12,000, val 1,500 images, 10 classes)")


def test_epoch_line_has_epoch_loss_proxy_speed_eta():
    m = {"epoch": 3, "loss": 0.77898, "proxy_knn": 0.4123, "images_per_s": 1234.5, "lr": 0.001}
    assert epoch_line(m, 20, 185.0) == "epoch 3/20  loss 0.7790  proxy 0.412  1,234 images/s  ETA 3m05s"
    # no proxy (eval.proxy: none), last epoch: no ETA
    assert epoch_line({"epoch": 20, "loss": 0.5}, 20, None) == "epoch 20/20  loss 0.5000"


def test_final_line_writes_counts_one_way():
    """params and flops as the report writes them (138,368), never 1.384e+05."""
    m = {"val_accuracy": 0.91234, "test_accuracy": 0.905, "params": 138368, "flops": 4850688.0, "loss": 0.58163,
         "images_per_s": 79.33, "train_seconds": 39.1, "node_ids": "abc"}
    line = final_line(m)
    assert line == ("final: val_accuracy 0.9123, test_accuracy 0.9050, params 138,368, flops 4,850,688, "
                    "loss 0.5816, 79 images/s, 39s of training")
    assert "e+" not in line


@pytest.mark.parametrize("s,text", [(0, "0s"), (59.4, "59s"), (61, "1m01s"), (3599, "59m59s"), (3720, "1h02m"),
                                    (float("nan"), "?"), (-1, "?")])
def test_duration(s, text):
    assert duration(s) == text


def test_eta_from_the_pace_after_the_first_epoch():
    eta = Eta(epochs=10, started=100.0)
    assert eta.after(1, 130.0) == pytest.approx(9 * 30.0)  # start-up included while only one epoch is known
    assert eta.after(2, 140.0) == pytest.approx(8 * 10.0)  # then the pace between epochs
    assert eta.after(4, 160.0) == pytest.approx(6 * 10.0)
    resumed = Eta(epochs=10, started=0.0)
    assert resumed.after(6, 12.0, resumed_from=5) == pytest.approx(4 * 12.0)  # one epoch trained in 12 s, not 6


def test_the_printer_says_where_a_resumed_run_resumed_once():
    """A worker group restarted from the checkpoint of epoch 2 (tests/scenarios/test_faults.py kills a worker for real)."""
    import io

    from simmim_ray.train.epoch_lines import EpochPrinter

    out = io.StringIO()
    p = EpochPrinter(5, out=out, started=0.0)
    p.show({"epoch": 1, "loss": 0.9, "resumed_from_epoch": 0}, now=10.0)
    p.show({"epoch": 3, "loss": 0.7, "resumed_from_epoch": 2}, now=40.0)
    p.show({"epoch": 4, "loss": 0.6, "resumed_from_epoch": 2}, now=50.0)
    p.show({"epoch": 5, "loss": 0.5, "resumed_from_epoch": 2}, now=60.0)
    assert out.getvalue().splitlines() == [
        "epoch 1/5  loss 0.9000  ETA 40s",
        "resumed at epoch 2 from the latest checkpoint",
        "epoch 3/5  loss 0.7000  ETA 30s",
        "epoch 4/5  loss 0.6000  ETA 13s",  # the pace since epoch 1, the restart included
        "epoch 5/5  loss 0.5000"]


def test_ray_lines_are_plain_when_the_output_is_not_a_terminal(monkeypatch):
    import io
    import os

    from simmim_ray.train.ray_init import plain_ray_lines

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("RAY_COLOR_PREFIX", raising=False)
    plain_ray_lines(Tty())
    assert "RAY_COLOR_PREFIX" not in os.environ  # a terminal keeps Ray's colours
    plain_ray_lines(io.StringIO())
    assert os.environ["RAY_COLOR_PREFIX"] == "0"
    monkeypatch.setenv("RAY_COLOR_PREFIX", "1")
    plain_ray_lines(io.StringIO())
    assert os.environ["RAY_COLOR_PREFIX"] == "1"  # the user's choice stands
