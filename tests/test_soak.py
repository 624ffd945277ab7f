"""The chaos soak (``benchmarks/soak.py``): 200 with-blocks under a 20 % random fault rate.

Three seeds, each with ``Session`` blocks (one after another) and with ``AsyncSession`` blocks
(eight at a time in one event loop, sharing one cache). For each: nothing leaked, nothing
duplicated, nothing missing from the cache (and nothing extra), no pending end or create intent
left, the cache intact, and the faults really fired (a soak without faults proves nothing). Run
it bigger with ``python benchmarks/soak.py --blocks 2000 --seed 1 --seed 2`` (``--async
--concurrency 8`` for ``AsyncSession``).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
BLOCKS = 200
MESSAGES = 3
#: (kind, blocks at a time)
KINDS = [pytest.param("sync", 1, id="Session"), pytest.param("async", 8, id="AsyncSession")]


def load_soak() -> ModuleType:
    spec = importlib.util.spec_from_file_location("soak", ROOT / "benchmarks" / "soak.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["soak"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("kind", "concurrency"), KINDS)
@pytest.mark.parametrize("seed", [11, 22, 33])
def test_soak(
    seed: int, kind: str, concurrency: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    soak = load_soak()
    f: dict[str, Any] = soak.run_soak(
        blocks=BLOCKS,
        messages=MESSAGES,
        fault_rate=0.2,
        seed=seed,
        db=tmp_path / "h.db",
        kind=kind,
        concurrency=concurrency,
    )
    with capsys.disabled():
        print("\n" + soak.format_figures(f))
    # The faults fired, of every kind, and retries replayed lost creates/sends.
    assert f["faults_injected"] > 0.1 * f["requests"]
    assert set(f["faults_by_kind"]) == {
        "429",
        "500",
        "502",
        "503",
        "drop_before",
        "drop_after",
        "truncate",
    }
    assert f["idempotent_replays"] > 0
    # Every block opened exactly one session and it was ended.
    assert f["sessions_opened"] == BLOCKS
    assert f["sessions_ended"] == BLOCKS
    assert f["blocks_raising_their_own_error"] == BLOCKS // 25
    assert f["reap_ok"]
    assert f["leaked"] == 0
    assert f["duplicates"] == 0
    assert f["missing"] == 0 and f["extra"] == 0
    assert f["pending_in_cache"] == 0 and f["intents_in_cache"] == 0
    assert f["cache_integrity"] == "ok"
    assert soak.ok(f)


@pytest.mark.parametrize(("kind", "concurrency"), KINDS)
def test_soak_with_too_few_retries_leaks_nothing_after_reap(
    kind: str, concurrency: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """max_retries=1: many blocks fail for good. The reap step must still leave nothing active
    and nothing duplicated, and the next run's sync must leave nothing missing."""
    soak = load_soak()
    f: dict[str, Any] = soak.run_soak(
        blocks=150,
        messages=MESSAGES,
        fault_rate=0.2,
        seed=44,
        max_retries=1,
        db=tmp_path / "h.db",
        sync_after=True,
        kind=kind,
        concurrency=concurrency,
    )
    with capsys.disabled():
        print("\n" + soak.format_figures(f))
    assert f["blocks_failed"] >= 10  # the failure paths really ran
    assert f["active_before_reap"] > 0 and f["reaped"] >= f["active_before_reap"]
    assert f["sessions_opened"] <= 150
    assert f["leaked"] == 0 and f["duplicates"] == 0
    assert f["missing"] == 0 and f["extra"] == 0
    assert f["pending_in_cache"] == 0 and f["intents_in_cache"] == 0
    assert soak.ok(f)
