"""Keys, options and text the server could not take are refused before any request, with a typed
error that never shows the key."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from pdffillr_sessions import (
    ConfigurationError,
    InvalidInputError,
    PdffillrClient,
)
from pdffillr_sessions.cli import main as cli
from pdffillr_sessions.emulator import Emulator

KEY = "sk_input_validation_0123456789"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def client(emulator: Emulator) -> Iterator[PdffillrClient]:
    with PdffillrClient(KEY, base_url=emulator.url, sleep=lambda s: None) as c:
        yield c


@pytest.mark.parametrize("key", ["sk_tést_SECRET_value", "sk_del\x7fSECRET", "sk_\u200bSECRET"])
def test_non_ascii_or_unprintable_keys_are_configuration_errors_without_the_key(
    key: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigurationError) as info:
        PdffillrClient(key)
    assert "SECRET" not in str(info.value) and "SECRET" not in repr(info.value.args)
    result = CliRunner().invoke(
        cli, ["sync", "--db", str(tmp_path / "k.db")], env={"PDFFILLR_API_KEY": key}
    )
    assert result.exit_code == 1
    assert "Traceback" not in result.output and "SECRET" not in result.output
    assert result.output.startswith("Error: ")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout": 0},
        {"timeout": -1},
        {"timeout": "abc"},
        {"max_retries": -1},
        {"base_url": "http://host/api?x=1"},
        {"base_url": "http://host/#frag"},
    ],
)
def test_bad_options_are_configuration_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        PdffillrClient(KEY, **kwargs)  # type: ignore[arg-type]


def test_a_base_url_path_prefix_is_kept(emulator: Emulator) -> None:
    import httpx

    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(200, json=[])

    with PdffillrClient(
        KEY, base_url="http://proxy.test/pdffillr", transport=httpx.MockTransport(handler)
    ) as c:
        c.sessions.list()
    assert seen == ["/pdffillr/v1/sdk/chat/sessions"]


def test_lone_surrogates_are_refused_before_any_request(
    client: PdffillrClient, emulator: Emulator, tmp_path: Path
) -> None:
    with pytest.raises(InvalidInputError):
        client.sessions.create(title="bad \udcff title")
    info = client.sessions.create()
    with pytest.raises(InvalidInputError):
        client.sessions.send(info.session_id, "lone \ud800 surrogate")
    with pytest.raises(InvalidInputError):
        client.sessions.attach(info.session_id, file=b"%PDF", filename="bad\udcff.pdf")
    assert emulator.history(KEY, info.session_id) == []
    # A POSIX file name that is not UTF-8 still uploads, under a readable name.
    weird = Path(os.fsdecode(bytes(tmp_path) + b"/r\xe9sum\xe9.pdf"))
    weird.write_bytes(b"%PDF-1.7")
    [doc, *_] = client.sessions.attach(info.session_id, file=weird)
    assert doc.document is not None and doc.document["filename"] == "r\ufffdsum\ufffd.pdf"
