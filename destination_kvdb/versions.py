"""Per dedup key, the newest version this run has sent: an older version arriving later is never sent.

The index spans the whole run of `write`, across batches and states, so a version KvDB stored and a state
acknowledged is never replaced by an older one later in the run. A new run starts empty: across runs the
later run wins (the store is never read).

Memory stays bounded: the recent keys live in a dict; past `in_memory_keys` the dict's versions go to a
temporary file (spilled_versions.SpilledVersions, one write per chunk) and it starts again, from then on with chunks of
SPILLED_CHUNK_KEYS. A key that is not in the dict costs, once anything spilled, one probe of an in-memory index
that tells a key the file never held without touching the disk (all of a stream of millions of distinct keys),
and one version decoded for a key it holds: from the file's newest chunks, kept in memory, or from one block read.
"""

from __future__ import annotations

from typing import Optional

from destination_kvdb.cursors import Version
from destination_kvdb.spilled_versions import SpilledVersions

IN_MEMORY_KEYS = 100_000  # about 25 MB of dict per dedup stream
SPILLED_CHUNK_KEYS = 10_000  # once a stream spilled: the dict holds this many between writes (the index grows instead)


class VersionIndex:
    """The newest version sent per key in this run; `admit` says whether a record's version may be sent."""

    def __init__(self, in_memory_keys: int = IN_MEMORY_KEYS):
        self._recent: dict[str, Version] = {}
        self._in_memory_keys = in_memory_keys
        self._spilled: Optional[SpilledVersions] = None

    def admit(self, key: str, version: Version) -> bool:
        """True, noting the version, unless the key already holds a newer one (an equal one arrived earlier: this wins)."""
        recent = self._recent
        stored = recent.get(key)
        if stored is not None:
            if version < stored:
                return False
        elif self._spilled is not None or len(recent) >= self._in_memory_keys:
            if len(recent) >= self._in_memory_keys:
                self._spill()
            if not self._spilled.admit(key, version, len(recent)):
                return False
        recent[key] = version
        return True

    def _spill(self) -> None:
        recent = self._recent
        if self._spilled is None:  # the index starts with the keys already in memory
            self._spilled = SpilledVersions()
            for position, key in enumerate(recent):
                self._spilled.admit(key, recent[key], position)
            self._in_memory_keys = min(self._in_memory_keys, SPILLED_CHUNK_KEYS)
        self._spilled.write(recent)
        recent.clear()

    def close(self) -> None:
        if self._spilled is not None:
            self._spilled.close()
