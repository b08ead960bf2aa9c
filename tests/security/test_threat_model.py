"""docs/security.md names, for each threat, the test that proves its defence: those tests exist.

A renamed or deleted test would otherwise leave the threat model pointing at nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# `tests/x/test_y.py::test_name`, and the `::test_other` shorthands that follow it in one cell.
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`|`::(\w+)`")


def references() -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for line in (ROOT / "docs" / "security.md").read_text().splitlines():
        current = None
        for match in REFERENCE.finditer(line):
            if match.group(1):
                current = match.group(1)
                found.append((current, match.group(2)))
            elif current is not None:
                found.append((current, match.group(3)))
    return found


def test_every_test_the_threat_model_names_exists():
    named = references()
    assert len(named) > 50, "the threat model should name its tests as `tests/...::test_name`"
    missing = []
    for path, name in named:
        source = ROOT / path
        if not source.exists() or not re.search(rf"^(async )?def {name}\(", source.read_text(), re.MULTILINE):
            missing.append(f"{path}::{name}")
    assert not missing, missing
