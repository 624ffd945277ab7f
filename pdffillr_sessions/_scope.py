"""What scopes a cached row: a one-way fingerprint of the API key, and the server it lives on.

A session id means something only on the server that made it, under the key that made it: the
cache records both, so that a command run against another server (a staging URL, an emulator)
never touches, marks or forgets another server's rows.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ._secret import Secret

_DOMAIN = b"pdffillr-sessions/key-scope/v1\x00"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def key_scope(api_key: str | Secret) -> str:
    """A short, stable, one-way fingerprint of ``api_key``.

    Sixteen hex digits of a domain-separated SHA-256: enough to tell keys apart in one cache,
    useless for recovering the key, and never the key's own bytes.
    """
    return Secret.of(api_key).fingerprint(_DOMAIN)


def server_id(base_url: str) -> str:
    """The server a base URL names, in one spelling: what the cache records for each row.

    Scheme and host lowercased, a default port dropped, no user or password (a URL may carry
    credentials: they are never stored), no trailing slash. ``HTTPS://API.Pdffillr.ai:443/``
    and ``https://api.pdffillr.ai`` are the same server.
    """
    parts = urlsplit(base_url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    port = parts.port
    netloc = host if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"
