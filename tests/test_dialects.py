"""A server that follows the contract but makes its other allowed choices works unchanged:
201 instead of 200, ``{"data": [...]}`` envelopes, extra fields, ``+00:00`` offsets, 204 on end,
409 on ending an ended session."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

import pytest
from click.testing import CliRunner

from pdffillr_sessions import HistoryCache, PdffillrClient, Session
from pdffillr_sessions.cli import main as cli
from pdffillr_sessions.emulator import Dialect, Emulator

KEY = "sk_dialect_tests_1234567890"

DIALECTS = {
    "canonical": Dialect(),
    "all-other-choices": Dialect(
        create_status=201,
        append_status=201,
        list_envelope=True,
        extra_fields=True,
        offset_timestamps=True,
        end_status=204,
        end_ended="409",
    ),
    "envelopes-only": Dialect(list_envelope=True),
    "extra-fields-and-offsets": Dialect(extra_fields=True, offset_timestamps=True),
}


@pytest.mark.parametrize("name", DIALECTS)
def test_the_whole_lifecycle_works_against_every_dialect(name: str, tmp_path: Path) -> None:
    db = tmp_path / "d.db"
    with Emulator(dialect=DIALECTS[name]) as emu:
        with PdffillrClient(KEY, base_url=emu.url, sleep=lambda s: None) as client:
            with Session(client, title="dialect", cache=db) as s:
                sent = s.send("hello")
                docs = s.attach(url="https://example.com/a.pdf")
                history = s.history()
            assert [e.id for e in history] == [e.id for e in sent + docs]
            assert all(e.created_at.utcoffset() is not None for e in history)
            assert history[0].created_at.astimezone(UTC) == history[0].created_at
            client.sessions.end(s.session_id)  # ending again: 200, 204 or 409 are all "ended"
            [listed] = client.sessions.list()
            assert listed.ended and listed.message_count == len(history)
            if DIALECTS[name].extra_fields:
                assert set(listed.raw) > {"session_id", "title", "status"}
            server_history = emu.history(KEY, s.session_id)
            result = CliRunner().invoke(
                cli,
                ["sync", "--db", str(db)],
                env={"PDFFILLR_API_KEY": KEY, "PDFFILLR_BASE_URL": emu.url},
            )
            assert result.exit_code == 0, result.output
    with HistoryCache(db) as cache:
        assert [dict(e.raw) for e in cache.history(s.session_id)] == server_history
        row = cache.session(s.session_id)
        assert row is not None and row.local_state == "ended" and row.status == "ended"
