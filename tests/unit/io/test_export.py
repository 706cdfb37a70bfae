"""`load_encoder` on a best/ whose files disagree, or are no export at all: one line naming both files and the first
tensor that does not fit (it was torch's 20-line RuntimeError naming neither file). No Ray."""
from __future__ import annotations

import pytest
import torch
import yaml

from simmim_ray.config import Config
from simmim_ray.errors import UserError
from simmim_ray.io.export import load_encoder
from simmim_ray.models import build_encoder

VIT = {"model": {"img_size": 16, "embed_dim": 16, "depth": 1, "num_heads": 2}}


def export(root, weights_of: dict, config: dict) -> str:
    """<root>/best/ holding the weights of model `weights_of` and the config `config`."""
    best = root / "best"
    best.mkdir(parents=True)
    torch.save(build_encoder(Config.from_dict(weights_of).model).state_dict(), best / "encoder.pt")
    (best / "config.yaml").write_text(yaml.safe_dump(Config.from_dict(config).to_dict(), sort_keys=False))
    return str(best)


def first_misfit(weights_of: dict, config: dict) -> tuple[str, list, list]:
    saved = build_encoder(Config.from_dict(weights_of).model).state_dict()
    wanted = build_encoder(Config.from_dict(config).model).state_dict()
    name = next(k for k in wanted if saved[k].shape != wanted[k].shape)
    return name, list(saved[name].shape), list(wanted[name].shape)


def test_matching_files_load(tmp_path):
    enc = load_encoder(export(tmp_path, VIT, VIT))
    assert enc(torch.zeros(1, 3, 16, 16)).shape == (1, 16, 4, 4)


def test_a_config_of_another_width_names_both_files_and_the_first_misfit(tmp_path):
    wider = {"model": {**VIT["model"], "embed_dim": 32}}
    best = export(tmp_path, VIT, wider)
    name, there, needed = first_misfit(VIT, wider)
    with pytest.raises(UserError) as e:
        load_encoder(best)
    assert str(e.value) == (
        f"{best}/config.yaml describes model.arch=vit, model.img_size=16, model.patch_size=4, model.embed_dim=32, "
        f"model.depth=1, model.num_heads=2, model.mlp_ratio=2.0, but {best}/encoder.pt holds `{name}` of shape "
        f"{there}, where the config's model has {needed}; the two files must come from one export "
        f"(simmim_ray.io.export.export_best)")
    assert there[-1] == 16 and needed[-1] == 32


def test_a_config_of_another_depth_names_the_missing_or_extra_tensor(tmp_path):
    deeper = {"model": {**VIT["model"], "depth": 2}}
    with pytest.raises(UserError, match=r"encoder.pt has no `[\w.]*layer_1\.[\w.]+` \(the config's model needs one of "
                                        r"shape \[\d+(, \d+)*\]\)"):
        load_encoder(export(tmp_path / "a", VIT, deeper))
    with pytest.raises(UserError, match=r"encoder.pt holds `[\w.]*layer_1\.[\w.]+`, which the config's model has no "
                                        r"place for"):
        load_encoder(export(tmp_path / "b", deeper, VIT))


@pytest.mark.parametrize("file, content, message", [
    ("encoder.pt", b"not a checkpoint", "encoder.pt: cannot be loaded as encoder weights ("),
    ("config.yaml", b"model: {embed_dim: abc}\n", "config.yaml: `model.embed_dim` must be int, but got 'abc' (str)"),
    ("config.yaml", b"model: [1, 2\n", "config.yaml is not valid YAML: "),
])
def test_a_file_that_is_no_export_is_one_line_naming_it(tmp_path, file, content, message):
    best = export(tmp_path, VIT, VIT)
    (tmp_path / "best" / file).write_bytes(content)
    with pytest.raises(UserError) as e:
        load_encoder(best)
    assert str(e.value).startswith(f"{best}/{message}")
    assert "\n" not in str(e.value)
