"""The rows of docs/bad_input.md: (id, group, what, command, key, message), and the files they use; one module per
input family (bad_input_cases_config, _spaces, _flags, _paths, _data), gathered here in the table's order.

Read by tests/unit/cli/test_bad_input.py, which runs every row and regenerates the docs table from it.
"""
from __future__ import annotations

from bad_input_cases_config import CONFIG
from bad_input_cases_data import DATA
from bad_input_cases_flags import CLUSTER, FLAGS
from bad_input_cases_paths import EXPERIMENT, STORAGE
from bad_input_cases_spaces import HOSTILE, SPACE, SPACES

__all__ = ["CASES", "HOSTILE", "SPACES"]

# (id, group, what is wrong, command after `simmim-ray`, the key the message must name, exact message); the order is
# the table's (its rows are numbered)
CASES = [*CONFIG, *SPACE, *FLAGS, *EXPERIMENT, *DATA, *STORAGE, *CLUSTER]
