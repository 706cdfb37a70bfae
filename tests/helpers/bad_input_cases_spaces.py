"""The search-space rows of docs/bad_input.md (bad_input_cases.py gathers every family), and the space files they
use."""
from __future__ import annotations

# Search spaces the rows below use (files spaces/<name>.yaml in the scratch directory).
SPACES = {
    "ok": "params:\n  mask.ratio: {uniform: [0.4, 0.8]}\n",
    "unknown_key": "params:\n  model.foo: {uniform: [0.0, 1.0]}\n",
    "unknown_top": "paramz:\n  mask.ratio: {uniform: [0.4, 0.8]}\n",
    "empty_choice": "params:\n  mask.ratio: {choice: []}\n",
    "low_gt_high": "params:\n  mask.ratio: {uniform: [0.8, 0.4]}\n",
    "int_low_gt_high": "params:\n  model.depth: {int: [4, 1]}\n",
    "loguniform_zero": "params:\n  train.base_lr: {loguniform: [0, 0.01]}\n",
    "heads": "params:\n  model.num_heads: {choice: [2, 3]}\n",
    "float_on_int": "params:\n  model.embed_dim: {uniform: [16.0, 64.0]}\n",
    "str_on_int": "params:\n  model.depth: {choice: [2, three]}\n",
    "ratio_range": "params:\n  mask.ratio: {uniform: [0.4, 1.2]}\n",
    "two_dists": "params:\n  mask.ratio: {uniform: [0.4, 0.8], choice: [0.5]}\n",
    "bad_target": "target_accuracy: 85\nparams:\n  mask.ratio: {uniform: [0.4, 0.8]}\n",
    "fixed_int_key": "fixed:\n  1: 2\nparams:\n  mask.ratio: {uniform: [0.4, 0.8]}\n",
    "huge_range": "params:\n  model.depth: {int: [1, 160000000000000]}\n",
    "bad_budget": "budget: 0\nparams:\n  mask.ratio: {uniform: [0.4, 0.8]}\n",
    "dup_keys": "params:\n  mask.ratio: {uniform: [0.4, 0.8]}\n  mask.ratio: {uniform: [0.1, 0.2]}\n",
    "vit_window": "params:\n  model.window_size: {choice: [2, 4]}\n",
}
# Hostile files (spaces/<name>.yaml, written as bytes): see docs/bad_input.md
HOSTILE = {
    "bomb": ('a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 9) + "]\n" for i in range(8))).encode(),
    "nested": b"[" * 3000 + b"]" * 3000,
    "big": b"# padding\n" * 1_000_000,
    "latin1": b"params:\n  mask.ratio: {uniform: [0.4, 0.8]}  # caf\xe9\n",
}

SPACE = [
    # ---- search spaces ---------------------------------------------------------------------------------------
    ("space-unknown-key", "space", "searched key that is not a config field",
     "search spaces/unknown_key.yaml --storage-path exps --target-accuracy 0.5", "model.foo",
     "params.model.foo: unknown config key `model.foo`"),
    ("space-unknown-top", "space", "unknown top-level key (`paramz:`)",
     "check spaces/unknown_top.yaml", "paramz",
     "space 'unknown_top': unknown key `paramz` (allowed: target_accuracy, size_metric, trials, budget, grace_period, fixed, params)"),
    ("space-budget", "space", "a `budget:` of no trial-epochs",
     "check spaces/bad_budget.yaml", "budget",
     "space 'bad_budget': `budget >= 1` (trial-epochs) must hold, but got 0"),
    ("space-empty-choice", "space", "empty range (`choice: []`)",
     "check spaces/empty_choice.yaml", "mask.ratio",
     "params.mask.ratio: `choice` must be a non-empty list, but got []"),
    ("space-low-gt-high", "space", "low > high (`uniform: [0.8, 0.4]`)",
     "search spaces/low_gt_high.yaml --storage-path exps --target-accuracy 0.5", "mask.ratio",
     "params.mask.ratio: `low < high` must hold, but got low=0.8, high=0.4"),
    ("space-int-low-gt-high", "space", "int low > high (`int: [4, 1]`)",
     "check spaces/int_low_gt_high.yaml", "model.depth",
     "params.model.depth: `low <= high` must hold, but got low=4, high=1"),
    ("space-loguniform-0", "space", "loguniform with low <= 0",
     "check spaces/loguniform_zero.yaml", "train.base_lr",
     "params.train.base_lr: `low > 0` must hold for loguniform, but got low=0"),
    ("space-heads", "space", "a choice that makes heads not divide the width (`num_heads: {choice: [2, 3]}`)",
     "search spaces/heads.yaml --storage-path exps --target-accuracy 0.5", "model.num_heads",
     "space 'heads': model.num_heads=3 makes an invalid config: `model.embed_dim % model.num_heads == 0` "
     "must hold, but got 64 % 3"),
    ("space-float-on-int", "space", "float distribution on an int field",
     "check spaces/float_on_int.yaml", "model.embed_dim",
     "params.model.embed_dim: `uniform` needs a float field, but the field is int"),
    ("space-str-on-int", "space", "choice of a string for an int field",
     "check spaces/str_on_int.yaml", "model.depth",
     "`model.depth` must be int, but got 'three' (str)"),
    ("space-range-invalid", "space", "range reaching invalid values (`mask.ratio: {uniform: [0.4, 1.2]}`)",
     "check spaces/ratio_range.yaml", "mask.ratio",
     "space 'ratio_range': mask.ratio=1.2 makes an invalid config: `0 < mask.ratio < 1` must hold, "
     "but got 1.2"),
    ("space-two-dists", "space", "two distributions for one key",
     "check spaces/two_dists.yaml", "mask.ratio",
     "params.mask.ratio: exactly one of uniform, loguniform, int, choice (plus step/log for int) must be given, "
     "but got ['choice', 'uniform']"),
    ("space-target", "space", "`target_accuracy: 85` (a percentage)",
     "check spaces/bad_target.yaml", "target_accuracy",
     "space 'bad_target': `0 < target_accuracy <= 1` must hold, but got 85"),
    ("space-missing", "space", "space file that does not exist",
     "check spaces/nope.yaml", "spaces/nope.yaml",
     "search space file 'spaces/nope.yaml' does not exist"),
    ("space-yaml", "space", "malformed YAML space file",
     "check bad.yaml", "bad.yaml",
     "search space file 'bad.yaml' is not valid YAML: while parsing a flow sequence   in \"bad.yaml\", line 2, "
     "column 11 expected ',' or ']', but got '<stream end>'   in \"bad.yaml\", line 3, column 1"),
    ("space-fixed-int-key", "space", "a non-string key under `fixed:`",
     "check spaces/fixed_int_key.yaml", "fixed",
     "space 'fixed_int_key': fixed: config keys must be strings like `model.depth`, but got 1 (int)"),
    ("space-huge-range", "space", "an `int` range of 1.6e14 values",
     "check spaces/huge_range.yaml", "model.depth",
     "space 'huge_range': model.depth=160000000000000 makes an invalid config: `1 <= model.depth <= 256` must "
     "hold, but got 160000000000000"),
    ("space-duplicate-key", "space", "a searched key given twice",
     "check spaces/dup_keys.yaml", "mask.ratio",
     "search space file 'spaces/dup_keys.yaml' is not valid YAML: duplicate key 'mask.ratio'   in "
     "\"spaces/dup_keys.yaml\", line 3, column 3"),
    ("space-alias-bomb", "space", "a YAML alias bomb (9 levels of 9 aliases: 10^9 values)",
     "check spaces/bomb.yaml", "bomb.yaml",
     "search space file 'spaces/bomb.yaml' is refused: more than 10,000 values once its aliases are expanded"),
    ("space-nested", "space", "3,000 nested brackets",
     "check spaces/nested.yaml", "nested.yaml",
     "search space file 'spaces/nested.yaml' is refused: nested deeper than 64 levels"),
    ("space-too-big", "space", "a 10 MB space file",
     "check spaces/big.yaml", "big.yaml",
     "search space file 'spaces/big.yaml' has 10,000,000 bytes, more than the 250,000 bytes a YAML input may "
     "have"),
    ("space-not-utf8", "space", "a space file that is not UTF-8 (Latin-1 `é`)",
     "check spaces/latin1.yaml", "latin1.yaml",
     "search space file 'spaces/latin1.yaml' is not UTF-8 text (byte 0xe9 at offset 50)"),
    ("space-fifo", "space", "a named pipe as the space (reading it would block)",
     "check pipe.yaml", "pipe.yaml",
     "search space file 'pipe.yaml' is a named pipe; give a YAML file"),
]
