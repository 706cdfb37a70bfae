"""A real train from another directory with a relative data path (paths reach Ray absolute)."""
from __future__ import annotations

import pytest
from data_factory import make_image_folder
from proc_utils import run_simmim, set_args


@pytest.mark.slow
def test_train_from_another_directory_with_a_relative_data_path(tmp_path, cli_cluster):
    """A relative image-folder path, run from the data's folder: Ray's workers run elsewhere, so this failed in
    the workers (`does not exist`) until the driver resolved it."""
    make_image_folder(str(tmp_path / "imgs"), classes=2, per_class=12, corrupt=0, truncated=0)
    sets = {"data.source": "imagefolder", "data.path": "imgs", "model.img_size": 16, "model.embed_dim": 16,
            "model.depth": 1, "model.num_heads": 2, "mask.patch_size": 8, "train.epochs": 1,
            "train.batch_size": 4, "train.log_images": False, "eval.epochs": 1, "eval.batch_size": 4}
    rc, log = run_simmim(["train", "--workers", "1", "--output", "out", *set_args(sets)], tmp_path, timeout=300,
                         cluster=cli_cluster)
    assert rc == 0, log[-3000:]
    assert "final: val_accuracy " in log
    assert f"path: {tmp_path / 'imgs'}" in (tmp_path / "out" / "config.yaml").read_text()
