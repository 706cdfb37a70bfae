"""Real Ray Train runs: 2 data-parallel workers on digits, in process and through the `simmim-ray train` CLI."""
import glob
import json
import os

import pytest
from proc_utils import run_simmim, set_args

TINY = {
    "model.img_size": 16, "model.patch_size": 4, "model.embed_dim": 32, "model.depth": 2, "model.num_heads": 2,
    "mask.patch_size": 8, "mask.ratio": 0.5,
    "train.epochs": 2, "train.warmup_epochs": 1, "train.batch_size": 64, "train.log_images": True,
    "eval.epochs": 1, "eval.batch_size": 64,
}


def scalars(tb_dir: str) -> tuple[dict[str, list[float]], dict]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(tb_dir, size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}, acc.Tags()


@pytest.mark.slow
def test_two_worker_ray_train_on_digits(ray_session, tmp_path):
    from simmim_ray.config import Config
    from simmim_ray.train.launch import Resources, make_trainer

    cfg = Config().with_overrides(TINY)
    tb = str(tmp_path / "tb")
    trainer = make_trainer(cfg, Resources(workers=2, cpus_per_worker=1.0, threads=1),
                           storage_path=str(tmp_path / "runs"), name="digits2", tb_dir=tb)
    result = trainer.fit()
    m = result.metrics
    assert m["epoch"] == 2 and m["done"] is True
    assert 0.0 <= m["val_accuracy"] <= 1.0
    assert m["params"] > 0 and m["flops"] > 0
    # 2 workers split the training set: each rank trains on its half only (full batches)
    from simmim_ray.data import build_splits

    n_train = len(build_splits(cfg).pretrain)
    assert m["images"] == (n_train // 2) // 64 * 64

    values, tags = scalars(tb)
    losses = values["loss/loss"]
    assert len(losses) == 2
    assert losses[-1] < losses[0], losses
    assert "eval/val_accuracy" in values and "train/lr" in values
    assert tags["images"], "no reconstruction image grids were logged"
    assert glob.glob(os.path.join(tb, "events.out.tfevents.*"))
    # every epoch left a checkpoint (the last 2 kept), each with the resolved config for export
    ckpts = glob.glob(str(tmp_path / "runs" / "digits2" / "**" / "state.pt"), recursive=True)
    assert len(ckpts) == 2
    assert result.checkpoint is not None

    # the same run started again (a search whose driver died before it recorded this trial's end): Train restores
    # the last checkpoint, and the run reports its final metrics again instead of nothing, training no epoch
    from simmim_ray.metrics import REPLAYED, VAL_ACCURACY

    again = make_trainer(cfg, Resources(workers=2, cpus_per_worker=1.0, threads=1),
                         storage_path=str(tmp_path / "runs"), name="digits2", tb_dir=tb).fit().metrics
    assert again[REPLAYED] is True and again[VAL_ACCURACY] == m[VAL_ACCURACY] and again["epoch"] == 2
    assert len(scalars(tb)[0]["loss/loss"]) == 2


@pytest.mark.slow
@pytest.mark.floor_smoke
def test_train_cli_end_to_end(tmp_path, cli_cluster):
    out = tmp_path / "out"
    rc, log = run_simmim(["train", "--workers", "2", "--output", str(out),
                          *set_args({**TINY, "train.log_images": False})], tmp_path, timeout=240,
                         cluster=cli_cluster)
    assert rc == 0, log[-3000:]
    assert " trial path (" in log  # one line says which trial path (simmim_ray/_compat) runs
    # what the terminal shows (not a TTY here): our lines only, no Ray report dicts, no colour codes
    lines = log.splitlines()
    assert lines[0].startswith("simmim-ray train: vit on digits (pretrain ") and " images), 2 epochs, 2 worker(s)" \
        in lines[0], lines[0]
    assert "{" not in lines[0]  # the data summary is words, not a dict
    epochs = [ln for ln in lines if ln.startswith("epoch ")]
    assert [ln.split()[1] for ln in epochs] == ["1/2", "2/2"], log[-3000:]  # one line per epoch, rank 0's only
    assert all(" loss " in ln and " images/s" in ln for ln in epochs) and "ETA " in epochs[0], epochs
    final = [ln for ln in lines if ln.startswith("final: ")]
    assert len(final) == 1 and final[0].startswith("final: val_accuracy ") and ", params " in final[0], final
    assert "Reporting training result" not in log and "TrainingReport(" not in log and "\x1b[" not in log
    assert "RayTrainWorker" not in log and "TrainController" not in log

    from simmim_ray.io.configio import load_config

    cfg = load_config(str(out / "config.yaml"))
    assert cfg.train.epochs == 2 and cfg.model.img_size == 16
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("val_accuracy", "params", "flops", "loss", "train_seconds"):
        assert key in metrics
    assert 0 <= metrics["val_accuracy"] <= 1 and metrics["epoch"] == 2
    assert glob.glob(str(out / "tb" / "events.out.tfevents.*"))
    assert glob.glob(str(out / "train" / "**" / "state.pt"), recursive=True)
