"""What the platform simulator adds to a share of its connections: hostile stream names, and another connection's
keys nested in this one's key space, which no attempt may touch.

Both are drawn from generators of their own (seeded by the history's seed), so every other draw of a history, and
so its jobs and attempts, stay as they were.
"""

from __future__ import annotations

import random
from typing import Any

from destination_kvdb import keys

HOSTILE_NAME_SHARE = 0.5
NESTED_NEIGHBOUR_SHARE = 0.5
# Suffixes that spell separators, escapes, hashed forms, fences and paths; " " + 40 x makes a name part hashed.
HOSTILE_SUFFIXES = (" ~é", "~0123456789ab", "__ab__x", "/k.1", " " + "x" * 40, "%7E~", ".!fence.0", "__ns__y")


def hostile_names(seed: int, streams: list) -> None:
    """Give the streams (StreamHistory) of a share of the connections names and namespaces built to collide."""
    rng = random.Random(f"{seed}/names")
    if rng.random() >= HOSTILE_NAME_SHARE:
        return
    for history in streams:
        history.name += rng.choice(HOSTILE_SUFFIXES)
        if history.namespace:
            history.namespace += rng.choice(HOSTILE_SUFFIXES)


def neighbour_keys(seed: int, streams: list, key_prefix: str) -> dict[str, Any]:
    """Another connection's keys, for a share of the connections: under key_prefix + "inner/" (a valid nested
    prefix), and under each stream's own prefixes + "/" as 0.5.0 let a key_prefix be; empty for the others."""
    if random.Random(f"{seed}/nested").random() >= NESTED_NEIGHBOUR_SHARE:
        return {}
    found: dict[str, Any] = {}
    for history in streams:
        own = keys.stream_prefix(history.name, history.namespace, key_prefix)
        inner = keys.stream_prefix(history.name, history.namespace, key_prefix + "inner/")
        found[inner + "1700000000000.g0.abc123.00000001"] = {"neighbour": "inner"}
        found[inner + "k.1"] = {"neighbour": "inner dedup"}
        found[own + "/k.1"] = {"neighbour": "0.5.0 prefix inside the stream's keys"}
        found[own + "/x__ab__1700000000000.g0.00000001"] = {"neighbour": "0.5.0 prefix inside the stream's keys"}
        found[keys.markers_prefix(own) + "/x__abg__1.000000000000"] = {"neighbour": "inside the markers"}
    return found
