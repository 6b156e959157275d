"""Append keys as the sink writes them (sink.py): `keys.append_key_head`, reused for 256 records, then the counter's
last two hex digits (`keys.COUNTER_LOW_HEX`). The key layout's tests build their samples here, so they test the
keys production writes."""

from destination_kvdb import keys


def append_key(prefix: str, epoch_ms: int, tag: str, run_id: str, counter: int) -> str:
    return keys.append_key_head(prefix, epoch_ms, tag, run_id, counter) + keys.COUNTER_LOW_HEX[counter & 0xFF]
