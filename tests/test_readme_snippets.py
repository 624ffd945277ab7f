"""The README works as written: every ```python block runs as it stands, and every file it
names is in the repository.

Each block runs in its own interpreter, in an empty folder, as a user with a server would run it:
``PDFFILLR_BASE_URL`` is a fresh emulator, ``PDFFILLR_API_KEY`` a key, ``PDFFILLR_SESSIONS_DB`` a
temporary cache. A block may start its own emulator; none may leave a session active.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pdffillr_sessions import PdffillrClient

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
KEY = "sk_readme_0123456789abcdef"
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)


def snippets() -> list[Any]:
    """Each python block with the README line it starts on (the test's id)."""
    return [
        pytest.param(m.group(1), id=f"README.md:{README.count(chr(10), 0, m.start()) + 1}")
        for m in _BLOCK.finditer(README)
    ]


def test_the_readme_has_its_snippets() -> None:
    # The top example, sessions, operations, the emulator: a broken fence would hide them.
    assert len(snippets()) >= 4


@pytest.mark.parametrize("code", snippets())
def test_a_readme_snippet_runs_as_written(code: str, tmp_path: Path, emulator: Any) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PDFFILLR_")}
    env.update(
        PDFFILLR_BASE_URL=emulator.url,
        PDFFILLR_API_KEY=KEY,
        PDFFILLR_SESSIONS_DB=str(tmp_path / "cache" / "history.db"),
        PYTHONPATH=str(ROOT),
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    with PdffillrClient(KEY, base_url=emulator.url) as client:
        left_open = [s.session_id for s in client.sessions.list() if s.status == "active"]
    assert left_open == [], "the snippet left sessions active"


#: A path inside the repository as the README writes it: `tests/test_x.py::test_y`, `.ci/run`.
_REPO_PATH = re.compile(r"^[\w.-]+(?:/[\w.-]+)+/?(?:::\w+)?$")


def test_every_file_the_readme_names_is_in_the_repository() -> None:
    named = {span for span in re.findall(r"`([^`\n]+)`", README) if _REPO_PATH.match(span)}
    linked = {t for t in re.findall(r"\]\(([^)\s]+)\)", README) if "://" not in t}
    assert named and linked
    for name in sorted(named | linked):
        path = (ROOT / name.split("::")[0].split("#")[0]).resolve()
        assert path.is_relative_to(ROOT), f"{name} is outside the repository"
        assert path.exists(), f"{name} is not in the repository"


def test_the_contract_copy_keeps_up_with_the_shared_one() -> None:
    """``docs/api-contract.md`` is the contract users read; it is written from the team's
    ``shared/api-contract.md`` (beside the repository, where there is one)."""
    shared = ROOT.parent / "shared" / "api-contract.md"
    if not shared.exists():
        pytest.skip("no shared/api-contract.md beside the repository")
    ours = (ROOT / "docs" / "api-contract.md").read_text(encoding="utf-8")
    theirs = shared.read_text(encoding="utf-8")
    body = "## Transport"
    assert ours[ours.index(body) :] == theirs[theirs.index(body) :]
