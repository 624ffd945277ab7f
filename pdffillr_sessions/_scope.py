"""The one-way fingerprint that scopes cached rows to an API key without storing the key."""

from __future__ import annotations

from ._secret import Secret

_DOMAIN = b"pdffillr-sessions/key-scope/v1\x00"


def key_scope(api_key: str | Secret) -> str:
    """A short, stable, one-way fingerprint of ``api_key``.

    Sixteen hex digits of a domain-separated SHA-256: enough to tell keys apart in one cache,
    useless for recovering the key, and never the key's own bytes.
    """
    return Secret.of(api_key).fingerprint(_DOMAIN)
