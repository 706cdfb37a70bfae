"""SearchSettings: the one source of the search's defaults, and every settings.json read back is checked."""
from __future__ import annotations

import pytest

from simmim_ray.cli import build_parser
from simmim_ray.errors import UserError
from simmim_ray.search import settings

GOOD = {"space_path": "/s/q.yaml", "name": "q", "root": "/e", "target_accuracy": 0.5}


def test_older_key_names_are_read_and_defaults_fill_the_rest():
    s = settings.from_dict({"space_path": "/s/q.yaml", "name": "q", "storage": "/old", "study_storage": "sqlite:///x.db",
                      "target_accuracy": 1, "overrides": ["a=1"]}, "settings.json")
    assert (s.root, s.study_db, s.target_accuracy, s.overrides, s.trials) == ("/old", "sqlite:///x.db", 1.0,
                                                                              ("a=1",), settings.default("trials"))
    assert isinstance(s.target_accuracy, float)


@pytest.mark.parametrize("change, words", [
    ({"color": "red"}, "settings.json: unknown key `color`"),
    ({"name": None}, "settings.json: `name` must be str, but got None"),
    ({"trials": True}, "`trials` must be int, but got True"),
    ({"trials": 2.5}, "`trials` must be int, but got 2.5"),
    ({"overrides": "a=1"}, "`overrides` must be tuple"),
    ({"overrides": [1]}, "`overrides` must be a list of strings"),
    ({"trials": 0}, "`trials >= 1` must hold, but got 0"),
    ({"target_accuracy": 1.5}, "`0 < target_accuracy <= 1` must hold, but got 1.5"),
    ({"scheduler": "hyperband"}, "`scheduler` must be one of constraint, asha, fifo"),
    ({"budget_epochs": -1}, "`budget_epochs >= 0` must hold"),
    ({"remeasure_seeds": 17}, "`0 <= remeasure_seeds <= 16` must hold"),
    ({"size_metric": "bytes"}, "`size_metric` must be one of params, flops"),
    ({"cpus_per_worker": float("inf")}, "`0 < cpus_per_worker < inf` must hold"),
    ({"gpu": True, "gpus_per_worker": 0}, "`0 < gpus_per_worker < inf` must hold"),
    ({"seed": -1}, "`0 <= seed < 2**32` must hold, but got -1"),
    ({"name": "a/b"}, "`name` must be a non-empty name without '/'"),
])
def test_bad_settings_are_one_line_naming_the_file_and_rule(change, words):
    with pytest.raises(UserError) as e:
        settings.from_dict({**GOOD, **change}, "settings.json")
    assert words in str(e.value) and str(e.value).startswith("settings.json: ") and "\n" not in str(e.value)


def test_missing_and_non_object_settings_are_refused():
    with pytest.raises(UserError, match="required key `target_accuracy` is missing"):
        settings.from_dict({k: v for k, v in GOOD.items() if k != "target_accuracy"}, "f")
    with pytest.raises(UserError, match="must hold a JSON object of search settings, but got list"):
        settings.from_dict([1], "f")


def test_the_command_line_states_no_defaults_of_its_own(capsys):
    """Every flag of `search` is None unless given: SearchSettings' defaults apply (its help reads them from
    there), and --resume can tell what the user asked to change."""
    args = build_parser().parse_args(["search"])
    flags = {k: v for k, v in vars(args).items() if k not in ("command", "debug")}
    assert all(v is None for v in flags.values()), {k: v for k, v in flags.items() if v is not None}
    with pytest.raises(SystemExit):
        build_parser().parse_args(["search", "--help"])
    assert f"(default {settings.default('sampler')})" in " ".join(capsys.readouterr().out.split())


def test_defining_fields_leave_out_what_a_resume_may_change():
    s = settings.SearchSettings(**GOOD)
    assert set(settings.RESUMABLE).isdisjoint(s.defining()) and {"target_accuracy", "overrides"} <= set(s.defining())
    with pytest.raises(KeyError):
        settings.default("name")
