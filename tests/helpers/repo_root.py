"""The repository root, for tests that read its files (docs, spaces, cluster.yaml, the package source): one
definition, so a test file can move between tests/ folders without counting `..`s."""
from __future__ import annotations

from pathlib import Path

REPO_PATH = Path(__file__).resolve().parents[2]  # tests/helpers/repo_root.py -> the repository
REPO = str(REPO_PATH)
