"""The key layout: pure functions that turn streams and records into KvDB keys.

Layout (documented in README and docs/integrations/destinations/kvdb.md):

    stream prefix   <key_prefix><name>__ab__                  stream without a namespace (0.1.x compatible)
                    <key_prefix><namespace>__ns__<name>__ab__ namespaced stream
    check's probe   <key_prefix>_airbyte_check_<32 hex digits>
    append/overwrite <prefix><13-digit epoch ms>.<tag>.<8 hex digits counter>
    append_dedup     <prefix>k.<pk value>[.<pk value>...]
    truncate marker  <prefix without "__ab__">__abg__<generation>.<hash of the live key>

key_prefix (empty by default) is the config's: every key the connector writes, lists or deletes starts with
it, so a prefix-scoped access token covers them all. It ends with '/' and is at most MAX_KEY_PREFIX_BYTES long;
each name part gives up half its length (rounded up) so that keys stay as short as without it.
A name part is used verbatim when it is "plain" (ASCII letters, digits, '.', '-', '_', without a
double underscore or a trailing underscore); otherwise it is written as '~' plus percent-encoding.
Plain parts never contain "__", so no stream's prefix can be the start of another stream's key.
Keys never exceed KvDB's 128 bytes: over-long parts keep a readable start and gain a hash.
Keys are printable ASCII without quotes or backslashes, so they go into JSON as they are.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Optional
from urllib.parse import quote

import msgspec

from destination_kvdb import messages

MAX_KEY_BYTES = 128
MAX_NAME_PART_BYTES = 36
MAX_KEY_PREFIX_BYTES = 32  # the spec's key_prefix pattern allows this many characters
STREAM_SEPARATOR = "__ab__"
NAMESPACE_SEPARATOR = "__ns__"
MARKER_SEPARATOR = "__abg__"
DEDUP_MARK = "k."
HASH_CHARS = 12

_PLAIN_NAME = re.compile(r"[A-Za-z0-9._-]+")
_APPEND_SUFFIX = re.compile(r"\d{13}\.([grs][0-9a-z]+)\.[0-9a-f]{8}")
_SAFE_PK_CHARS = "-_~!$'()*+,;=@:/"  # quote() also keeps "." which _pk_text escapes itself


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:HASH_CHARS]


def _truncate_utf8(text: str, max_bytes: int) -> str:
    return text.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")


def _is_plain(name: str) -> bool:
    return bool(_PLAIN_NAME.fullmatch(name)) and "__" not in name and not name.endswith("_")


def encode_name_part(name: str, max_bytes: int = MAX_NAME_PART_BYTES) -> str:
    """Encode a stream or namespace name so it cannot contain "__" and stays within max_bytes."""
    encoded = name if _is_plain(name) else "~" + quote(name, safe=".-").replace("_", "%5F")
    if len(encoded.encode("utf-8")) <= max_bytes:
        return encoded
    keep = max_bytes - HASH_CHARS - 1
    start = _truncate_utf8(encoded, keep).rstrip("_")
    return f"{start}~{_digest(name)}"


def stream_prefix(name: str, namespace: Optional[str] = None, key_prefix: str = "") -> str:
    """Every key of the stream starts with this; an empty namespace counts as none."""
    part_bytes = MAX_NAME_PART_BYTES - (len(key_prefix) + 1) // 2
    stem = encode_name_part(name, part_bytes)
    if namespace:
        stem = encode_name_part(namespace, part_bytes) + NAMESPACE_SEPARATOR + stem
    return key_prefix + stem + STREAM_SEPARATOR


def probe_key(key_prefix: str, token: str) -> str:
    """check's probe: under key_prefix, outside every stream's keys."""
    return f"{key_prefix}_airbyte_check_{token}"


def markers_prefix(prefix: str) -> str:
    """Where the truncate-refresh markers of a dedup stream live, outside every stream's prefix."""
    return prefix[: -len(STREAM_SEPARATOR)] + MARKER_SEPARATOR


def marker_digest(live_key: str) -> str:
    return _digest(live_key)


def marker_key(prefix: str, generation: int, live_key: str) -> str:
    """A marker says "generation N wrote live_key"; the live key itself is the marker's value."""
    return f"{markers_prefix(prefix)}{generation}.{marker_digest(live_key)}"


def parse_marker(prefix: str, key: str) -> Optional[tuple[int, str]]:
    """(generation, digest of the live key) of a marker key, or None for anything else."""
    generation, _, digest = key[len(markers_prefix(prefix)) :].partition(".")
    return (int(generation), digest) if generation.isdigit() and digest else None


def generation_tag(generation_id: int) -> str:
    return f"g{generation_id}"


def sync_tag(sync_id: int) -> str:
    """Tag of an overwrite sync without generation ids: shared by every attempt of the sync."""
    return f"s{sync_id}"


def run_tag(run_id: int) -> str:
    """Tag of an overwrite run with neither generation nor sync id (hand runs): unique to the process."""
    return "r" + _base36(run_id)


def tag_generation(tag: Optional[str]) -> Optional[int]:
    """The generation a tag names, or None for sync/run tags and untagged keys."""
    return int(tag[1:]) if tag and tag[0] == "g" and tag[1:].isdigit() else None


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while True:
        number, rest = divmod(number, 36)
        text = digits[rest] + text
        if number == 0:
            return text


COUNTER_LOW_HEX = tuple(f"{low:02x}" for low in range(256))


def append_key_head(prefix: str, epoch_ms: int, tag: str, counter: int) -> str:
    """An append key without the counter's last two hex digits, so writers can reuse it 256 times."""
    return f"{prefix}{epoch_ms:013d}.{tag}.{counter >> 8:06x}"


def append_key(prefix: str, epoch_ms: int, tag: str, counter: int) -> str:
    """Keys sort by arrival time, then by the writer's counter; the tag tells which sync wrote it."""
    return append_key_head(prefix, epoch_ms, tag, counter) + COUNTER_LOW_HEX[counter & 0xFF]


def append_key_tag(prefix: str, key: str) -> Optional[str]:
    """The tag of a key written by append_key, or None for any other key (e.g. a 0.1.x key)."""
    match = _APPEND_SUFFIX.fullmatch(key, len(prefix))
    return match.group(1) if match else None


class MissingPrimaryKey(ValueError):
    """A dedup record lacks a primary-key field or has it null."""


def primary_key_texts(fields: dict[str, msgspec.Raw], primary_key: list[list[str]]) -> list[str]:
    """The text of each primary-key value, from the record's raw top-level fields.

    A string is its text; anything else is its JSON spelling exactly as the source sent it
    (whitespace removed), so ids of any size or precision stay distinct.
    """
    texts = []
    for path in primary_key:
        value: Any = fields
        for depth, field in enumerate(path):
            if depth:
                try:
                    value = messages.fields(value)
                except msgspec.ValidationError:
                    raise MissingPrimaryKey(".".join(path)) from None
            value = value.get(field)
            if value is None or bytes(value) == b"null":
                raise MissingPrimaryKey(".".join(path))
        raw = bytes(value)
        texts.append(msgspec.json.decode(raw, type=str) if raw[:1] == b'"' else msgspec.json.format(raw, indent=-1).decode())
    return texts


def _pk_text(text: str) -> str:
    return quote(text, safe=_SAFE_PK_CHARS).replace(".", "%2E")


def dedup_key(prefix: str, pk_texts: list[str]) -> str:
    """The same primary key gives the same key in every sync (the id 1 and the id "1" share it); composite keys join with '.'."""
    key = prefix + DEDUP_MARK + ".".join(_pk_text(text) for text in pk_texts)
    if len(key.encode("utf-8")) <= MAX_KEY_BYTES:
        return key
    keep = MAX_KEY_BYTES - HASH_CHARS - 1
    return f"{_truncate_utf8(key, keep)}~{_digest(key)}"
