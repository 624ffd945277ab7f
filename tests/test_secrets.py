"""The API key never reaches a cassette, the cache, a log line, an exception or a repr."""

from __future__ import annotations

import re

from conftest import CASSETTE_KEY, REDACTED_AUTH, ROOT


def test_no_cassette_holds_a_key() -> None:
    files = list((ROOT / "cassettes").rglob("*.yaml"))
    assert files, "no cassettes recorded"
    key_shaped = re.compile(r"[Bb]earer +[A-Za-z0-9_\-]{8,}")
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert CASSETTE_KEY not in text, path
        assert "sk_wrong_key" not in text, path
        assert not key_shaped.search(text), path
        assert REDACTED_AUTH in text, path
