"""Query the history cache offline: no network, no API key.

    python examples/offline_query.py [SEARCH WORDS]

Lists the cached sessions newest first, then full-text searches every history.
"""

from __future__ import annotations

import sys

from _demo import demo_cache_path

from pdffillr_sessions import CacheError, HistoryCache


def main(argv: list[str]) -> int:
    query = " ".join(argv) or "subscription"
    path = demo_cache_path()
    try:
        cache = HistoryCache(path, readonly=True)
    except CacheError as exc:
        print(f"error: {exc} (run examples/quickstart.py first)", file=sys.stderr)
        return 1
    with cache:
        sessions = cache.sessions(limit=10)
        print(f"{len(sessions)} cached sessions in {path} (newest first):")
        for s in sessions:
            print(f"  [{s.status}] {s.session_id} {s.title or 'Untitled'}: {s.entry_count} entries")
        hits = cache.search(query, limit=5)
        print(f"{len(hits)} hits for {query!r}:")
        for hit in hits:
            print(f"  {hit.entry.session_id} {hit.entry.role or hit.entry.type}: {hit.snippet}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
