import pytest

from simmim_ray.config import Config, field_type
from simmim_ray.io.configio import dump_config, load_config, parse_set
from simmim_ray.errors import UserError


def test_defaults_are_valid_and_round_trip(tmp_path):
    cfg = Config.from_dict({})
    assert cfg.model.arch == "vit" and cfg.data.source == "digits"
    assert Config.from_dict(cfg.to_dict()) == cfg
    path = tmp_path / "c.yaml"
    dump_config(cfg, str(path))
    assert load_config(str(path)) == cfg


@pytest.mark.parametrize("d,needle", [
    ({"modle": {}}, "unknown config key `modle`"),
    ({"model": {"widht": 3}}, "unknown config key `model.widht`"),
    ({"model": {"embed_dim": "64"}}, "`model.embed_dim` must be int"),
    ({"model": {"embed_dim": 64.0}}, "`model.embed_dim` must be int"),
    ({"train": {"amp": 1}}, "`train.amp` must be bool"),
    ({"train": {"epochs": True}}, "`train.epochs` must be int"),
    ({"model": {"depths": 2}}, "`model.depths` must be a list of int"),
    ({"model": {"depths": [2, "x"]}}, "`model.depths[1]` must be int"),
    ({"model": 3}, "`model` must be a mapping"),
    ({"mask": {"ratio": 0.0}}, "`0 < mask.ratio < 1` must hold"),
    ({"mask": {"ratio": 1.0}}, "`0 < mask.ratio < 1` must hold"),
    ({"mask": {"patch_size": 6}}, "`mask.patch_size % model.patch_size == 0` must hold"),
    ({"model": {"img_size": 36}}, "`model.img_size % mask.patch_size == 0` must hold"),
    ({"model": {"embed_dim": 30}}, "`model.embed_dim % model.num_heads == 0` must hold"),
    ({"model": {"arch": "resnet"}}, "`model.arch` must be one of vit, swin, swinv2"),
    ({"model": {"arch": "swin", "img_size": 16, "patch_size": 2, "window_size": 3}},
     "`(model.img_size / model.patch_size) % model.window_size == 0` must hold for Swin"),
    ({"model": {"arch": "swin", "embed_dim": 30, "heads": [4, 4]}}, "`model.heads[0]` must divide"),
    ({"model": {"arch": "swin", "depths": [2], "heads": [2, 4]}}, "equally long lists"),
    ({"model": {"arch": "swin", "depths": [2, 0], "heads": [2, 4]}}, "`1 <= model.depths[1] <= 256` must hold"),
    ({"loss": {"type": "l3"}}, "`loss.type` must be one of"),
    ({"loss": {"visible_weight": -1}}, "`loss.visible_weight >= 0` must hold"),
    ({"loss": {"fgbg_weight": float("nan")}}, "`loss.fgbg_weight` must be a finite number, but got nan"),
    ({"eval": {"labeled_fraction": 0}}, "`0 < eval.labeled_fraction < 1` must hold"),
    ({"train": {"betas": [0.9]}}, "`len(train.betas) == 2` must hold, but got 1 items"),
    ({"train": {"base_lr": 0}}, "`train.base_lr > 0` must hold"),
])
def test_bad_config_is_one_line_user_error(d, needle):
    with pytest.raises(UserError) as e:
        Config.from_dict(d)
    msg = str(e.value)
    assert needle in msg
    assert "\n" not in msg


def test_ints_are_accepted_for_floats():
    cfg = Config.from_dict({"loss": {"visible_weight": 1}})
    assert cfg.loss.visible_weight == 1.0 and isinstance(cfg.loss.visible_weight, float)


def test_swin_valid_config_and_stride():
    cfg = Config.from_dict({"model": {"arch": "swin", "img_size": 32, "patch_size": 2, "depths": [2, 2, 2],
                                      "heads": [2, 4, 8], "window_size": 4}})
    from simmim_ray.models import build_encoder

    assert build_encoder(cfg.model).stride == 8  # patch 2 x 2 ** (3 stages - 1)
    assert build_encoder(Config().model).stride == Config().model.patch_size


def test_with_overrides_is_validated_and_does_not_mutate():
    base = Config()
    new = base.with_overrides({"model.embed_dim": 128, "loss.type": "l2"})
    assert new.model.embed_dim == 128 and new.loss.type == "l2"
    assert base.model.embed_dim == 64
    with pytest.raises(UserError, match="unknown config key `model.nope`"):
        base.with_overrides({"model.nope": 1})
    with pytest.raises(UserError, match="unknown config key `model.embed_dim.x`"):
        base.with_overrides({"model.embed_dim.x": 1})
    with pytest.raises(UserError, match="mask.ratio"):
        base.with_overrides({"mask.ratio": 2})


def test_field_type():
    assert field_type("model.embed_dim") is int
    assert field_type("loss.visible_weight") is float
    with pytest.raises(UserError, match="unknown config key `model.x`"):
        field_type("model.x")
    with pytest.raises(UserError, match="unknown config key"):
        field_type("seed.x")


def test_parse_set_yaml_values():
    assert parse_set(["a=1", "b=0.5", "c=true", "d=[1, 2]", "e=abc", "f=x=y"]) == {
        "a": 1, "b": 0.5, "c": True, "d": [1, 2], "e": "abc", "f": "x=y"}
    with pytest.raises(UserError, match="expected key=value"):
        parse_set(["novalue"])


def test_load_config_file_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model:\n  embed_dim: 48\n  num_heads: 3\nmask:\n  ratio: 0.7\n")
    cfg = load_config(str(p), ["mask.ratio=0.4", "train.epochs=3"])
    assert cfg.model.embed_dim == 48 and cfg.mask.ratio == 0.4 and cfg.train.epochs == 3
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  embed_dimm: 48\n")
    with pytest.raises(UserError, match="unknown config key `model.embed_dimm`"):
        load_config(str(bad))
    notyaml = tmp_path / "broken.yaml"
    notyaml.write_text("model: [unclosed\n")
    with pytest.raises(UserError, match="is not valid YAML") as e:
        load_config(str(notyaml))
    assert "\n" not in str(e.value)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(UserError, match="must hold a mapping"):
        load_config(str(lst))
    with pytest.raises(UserError, match="does not exist"):
        load_config(str(tmp_path / "missing.yaml"))
    # an empty file is the defaults
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_config(str(empty)) == Config()


def test_yaml_is_loaded_safely(tmp_path):
    p = tmp_path / "evil.yaml"
    p.write_text("seed: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(str(p))
