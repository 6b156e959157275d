"""Which keys survive the end of a stream, and what counts as the end: the rules in one place.

The platform retries a sync in attempts (fresh processes, same generation and sync id) that resume
from the last state echoed, and it signals a finished source only by a STREAM_STATUS COMPLETE per
stream (docs/integrations/destinations/kvdb.md, "Retention and completion"). So data is tagged with what identifies the sync across
attempts, and nothing is ever removed before COMPLETE.

| stream                                   | keys written are tagged   | removed after COMPLETE            |
|------------------------------------------|---------------------------|-----------------------------------|
| append / append_dedup, minimum gen 0/none| generation                | nothing                           |
| append / append_dedup, minimum gen > 0   | generation                | generations below the minimum and untagged keys |
| overwrite, generation > 0                | generation                | every key of another tag          |
| overwrite, no generation, sync id        | sync id                   | every key of another tag          |
| overwrite, neither (hand runs)           | this process              | every key of another tag          |

Only keys that parse as the stream's own (keys.py's grammar) are ever removed: a key under the stream's prefix
that the connector did not write for it (another application's) stays, and finalization warns about it.

A stream that truncates by generation, and every stream once any stream status arrived, is
finalized only by its COMPLETE; otherwise (hand-piped files, platforms without refreshes) a clean
end of an input that carried a record or a state of it completes it (stream_ends.py): silence never deletes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from airbyte_cdk.models import ConfiguredAirbyteStream, DestinationSyncMode

from destination_kvdb import keys


@dataclass(frozen=True)
class Retention:
    overwrite: bool
    generation_id: int
    minimum_generation_id: int
    sync_id: Optional[int]
    run_id: str

    @classmethod
    def of(cls, configured: ConfiguredAirbyteStream, run_id: str) -> "Retention":
        return cls(
            overwrite=configured.destination_sync_mode == DestinationSyncMode.overwrite,
            generation_id=configured.generation_id or 0,
            minimum_generation_id=configured.minimum_generation_id or 0,
            sync_id=configured.sync_id,
            run_id=run_id,
        )

    @property
    def tag(self) -> str:
        """The tag of the keys this sync writes: the same in every attempt whenever the platform says which sync it is."""
        if not self.overwrite or self.generation_id > 0:
            return keys.generation_tag(self.generation_id)
        if self.sync_id is not None and self.sync_id >= 0:
            return keys.sync_tag(self.sync_id)
        return keys.run_tag(self.run_id)

    @property
    def truncates(self) -> bool:
        """Whether finalizing removes anything at all."""
        return self.overwrite or self.minimum_generation_id > 0

    def needs_complete(self, statuses_seen: bool) -> bool:
        """Whether only a COMPLETE (not a clean end of input) may finalize the stream."""
        return self.minimum_generation_id > 0 or statuses_seen

    def keeps(self, tag: Optional[str]) -> bool:
        """Whether a key written with `tag` (None: untagged, such as a 0.1.x key) survives finalization."""
        if not self.truncates:
            return True
        if self.overwrite:
            return tag == self.tag
        generation = keys.tag_generation(tag)
        return generation is not None and generation >= self.minimum_generation_id

    def removes(self, prefix: str, key: str) -> bool:
        """Whether finalizing an append or overwrite stream deletes a listed key: only the stream's own keys (keys.py's
        grammar, any version's) whose tag is not kept; anything else under its prefix is not the stream's to delete."""
        return keys.is_own_key(prefix, key) and not self.keeps(keys.append_key_tag(prefix, key))
