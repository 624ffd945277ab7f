"""The README keeps its promises: its first lines are the two commands, and every test its
Guarantees section names exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
CI = (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def guarantees() -> str:
    start = README.index("## Guarantees")
    return README[start : README.index("\n## ", start + 1)]


def test_the_readme_opens_with_the_two_commands_and_ci_runs_the_second() -> None:
    first, second = README.splitlines()[:2]
    assert "pip install -e ." in first and "examples/quickstart.py" in first
    assert "pip install -e '.[test]'" in second
    test_command = second.split("&&")[-1].strip()
    assert test_command in CI.splitlines()


def test_every_test_named_in_guarantees_exists() -> None:
    section = guarantees()
    named: list[tuple[str, str]] = []
    current = ""
    for token in re.finditer(r"tests/(\w+\.py)(?:::(\w+))?|`(test_\w+)`", section):
        if token.group(1):
            current = token.group(1)
            if token.group(2):
                named.append((current, token.group(2)))
        else:
            named.append((current, token.group(3)))
    assert len(named) > 30
    for filename, test in named:
        source = (ROOT / "tests" / filename).read_text(encoding="utf-8")
        assert re.search(rf"^(async )?def {test}\(", source, re.M), f"{filename}::{test}"


def test_ci_enforces_the_style_before_the_tests() -> None:
    lines = [line.strip() for line in CI.splitlines() if line.strip() and not line.startswith("#")]
    checks = [".venv/bin/ruff check .", ".venv/bin/ruff format --check .", ".venv/bin/mypy"]
    tests = lines.index(".venv/bin/python -m pytest")
    assert all(lines.index(check) < tests for check in checks)
