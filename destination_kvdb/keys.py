"""The key layout: pure functions that turn streams and records into KvDB keys, and tell a stream's keys apart.

Grammar of every key written (documented in README and docs/integrations/destinations/kvdb.md, "Key layout"):

    key prefix      ""  |  (segment "/")+, a segment of [A-Za-z0-9._-] without "__", never "." or ".."
    part            plain | "~" escaped | head "~" 12 hex (a long part: its readable head, a hash of the whole part)
    stream prefix   <key_prefix><part: name>__ab__  |  <key_prefix><part: namespace>__ns__<part: name>__ab__
    append/overwrite <stream prefix><13-digit epoch ms>.<tag>.<6 base-36 run id>.<8 hex counter>
    append_dedup     <stream prefix>k.<pk>[.<pk>...]  |  <stream prefix>k.<pk head>~<32 hex>  (a long key)
    truncate marker  <stream prefix without "__ab__">__abg__<generation>.<12 hex>
    fences           <listing prefix>!fence.<hex>  and  <listing prefix>~fence.<hex>
    check's probe    <key_prefix>_airbyte_check_<32 hex>

A plain part is ASCII letters, digits, '.', '-', '_' without "__" and not ending with '_'; any other part is
escaped: '~' plus percent-encoding in which '_' and '~' are encoded too, so an escaped part holds '~' only first.
A primary-key value is percent-encoded with '.' and '~' encoded, so '.' only separates a composite key's values
and '~' only starts a hash. A hashed form therefore has a '~' where no unhashed form can: no short input spells
it, and its hash covers the whole input. Parts never contain "__" or '/', and a key_prefix never contains
"__", so no stream prefix (or marker prefix) is the start of another stream's, or another connection's, keys.
Keys never exceed KvDB's 128 bytes and are printable ASCII without quotes or backslashes (JSON as they are).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Any, Callable, Optional
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
HASH_MARK = "~"
HASH_CHARS = 12  # of a long name part (and of a marker's live key)
KEY_HASH_CHARS = 32  # of a long dedup key: 128 bits, as primary-key values may come from anyone
RUN_ID_CHARS = 6
LARGEST_TAG_ID = 2**63 - 1  # generation and sync ids are Java longs on the platform
# The longest append suffix (13-digit ms, '.', a tag of the largest id, '.', run id, '.', 8 hex counter) leaves this
# much of the 128 bytes to the stream prefix; a namespaced stream's namespace part shrinks to fit it.
MAX_STREAM_PREFIX_BYTES = MAX_KEY_BYTES - (13 + 1 + 1 + len(str(LARGEST_TAG_ID)) + 1 + RUN_ID_CHARS + 1 + 8)
FENCE_MARKS = ("!fence.", "~fence.")  # sort before and after every key of a listing prefix

_PLAIN_NAME = re.compile(r"[A-Za-z0-9._-]+")
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_SAFE_PK_CHARS = "-_!$'()*+,;=@:/"  # quote() also keeps "." and "~", which _pk_text escapes itself
_UNESCAPED_PK = re.compile("[A-Za-z0-9%s]+" % re.escape(_SAFE_PK_CHARS))  # the texts _pk_text keeps as they are
_UNESCAPED_PK_JSON = re.compile(b'"(%s)"' % _UNESCAPED_PK.pattern.encode())  # a JSON string of such a text (no escapes)
# What follows a stream prefix in the keys of that stream, by every version that wrote them:
_APPEND_SUFFIX = re.compile(r"\d{13}\.([grs][0-9a-z]+)\.(?:[0-9a-z]{%d}\.)?[0-9a-f]{8}" % RUN_ID_CHARS)  # 0.2-0.5: no run id
_OWN_SUFFIX = re.compile(
    _APPEND_SUFFIX.pattern
    + r"|\d+(?:\.\d+)?"  # 0.1.x: the record's time
    + r"|k\.[A-Za-z0-9%._~!$'()*+,;=@:/-]*"  # a dedup key (0.5.x escaped no '~')
    + r"|[!~]fence\.[0-9a-f]+"
)
_OWN_MARKER_SUFFIX = re.compile(r"(\d+)\.([0-9a-f]{%d})|[!~]fence\.[0-9a-f]+" % HASH_CHARS)


def _digest(text: str, chars: int = HASH_CHARS) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:chars]


def _truncate_utf8(text: str, max_bytes: int) -> str:
    return text.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")


def _is_plain(name: str) -> bool:
    return bool(_PLAIN_NAME.fullmatch(name)) and "__" not in name and not name.endswith("_")


def encode_name_part(name: str, max_bytes: int = MAX_NAME_PART_BYTES) -> str:
    """A stream or namespace name without "__" or '/', within max_bytes; distinct names give distinct parts."""
    encoded = name if _is_plain(name) else HASH_MARK + quote(name, safe=".-").replace("_", "%5F").replace("~", "%7E")
    if len(encoded.encode("utf-8")) <= max_bytes:
        return encoded
    start = _truncate_utf8(encoded, max_bytes - HASH_CHARS - 1)
    return f"{start.rstrip('_') or start}{HASH_MARK}{_digest(name)}"  # the head is never empty: '~' is never first


def stream_prefix(name: str, namespace: Optional[str] = None, key_prefix: str = "") -> str:
    """Every key of the stream starts with this; an empty namespace counts as none."""
    part_bytes = MAX_NAME_PART_BYTES - (len(key_prefix) + 1) // 2
    stem = encode_name_part(name, part_bytes)
    if namespace:
        room = MAX_STREAM_PREFIX_BYTES - len(key_prefix) - len(stem) - len(NAMESPACE_SEPARATOR) - len(STREAM_SEPARATOR)
        stem = encode_name_part(namespace, min(part_bytes, room)) + NAMESPACE_SEPARATOR + stem
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
    match = _OWN_MARKER_SUFFIX.fullmatch(key, len(markers_prefix(prefix))) if key.startswith(markers_prefix(prefix)) else None
    return (int(match.group(1)), match.group(2)) if match and match.group(1) else None


def is_own_key(prefix: str, key: str) -> bool:
    """Whether key is one the connector writes for the stream of this prefix (any version's, fences included)."""
    return key.startswith(prefix) and _OWN_SUFFIX.fullmatch(key, len(prefix)) is not None


def is_own_marker(prefix: str, key: str) -> bool:
    """Whether key is a truncate-refresh marker (or a fence among them) of the stream of this prefix."""
    markers = markers_prefix(prefix)
    return key.startswith(markers) and _OWN_MARKER_SUFFIX.fullmatch(key, len(markers)) is not None


def generation_tag(generation_id: int) -> str:
    return f"g{generation_id}"


def sync_tag(sync_id: int) -> str:
    """Tag of an overwrite sync without generation ids: shared by every attempt of the sync."""
    return f"s{sync_id}"


def new_run_id() -> str:
    """A random id of this process, in its append keys: no two processes write the same key, whatever their clocks."""
    return "".join(secrets.choice(_BASE36) for _ in range(RUN_ID_CHARS))


def run_tag(run_id: str) -> str:
    """Tag of an overwrite run with neither generation nor sync id (hand runs): unique to the process."""
    return "r" + run_id


def tag_generation(tag: Optional[str]) -> Optional[int]:
    """The generation a tag names, or None for sync/run tags and untagged keys."""
    return int(tag[1:]) if tag and tag[0] == "g" and tag[1:].isdigit() else None


COUNTER_LOW_HEX = tuple(f"{low:02x}" for low in range(256))


def append_key_head(prefix: str, epoch_ms: int, tag: str, run_id: str, counter: int) -> str:
    """An append key without the counter's last two hex digits (COUNTER_LOW_HEX[counter & 0xFF]), so a writer reuses
    it for 256 records. Keys sort by arrival time; the tag tells which sync wrote it, the run id and counter which
    process and record."""
    return f"{prefix}{epoch_ms:013d}.{tag}.{run_id}.{counter >> 8:06x}"


def append_key_tag(prefix: str, key: str) -> Optional[str]:
    """The tag of an append key (this version's or 0.2-0.5's), or None for any other key (e.g. a 0.1.x key)."""
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
            if value is None:
                raise MissingPrimaryKey(".".join(path))
        raw = bytes(value)
        if raw.isdigit():  # a valid JSON integer (the decoder checked it) without a sign: format would not change it
            texts.append(raw.decode())
        elif raw[:1] == b'"':
            texts.append(msgspec.json.decode(raw, type=str))
        elif raw == b"null":
            raise MissingPrimaryKey(".".join(path))
        else:
            texts.append(msgspec.json.format(raw, indent=-1).decode())
    return texts


def _pk_text(text: str) -> str:
    if text.isascii() and (text.isalnum() or _UNESCAPED_PK.fullmatch(text)):  # ids, UUIDs: quote would keep them
        return text
    return quote(text, safe=_SAFE_PK_CHARS).replace(".", "%2E").replace("~", "%7E")


def dedup_key(prefix: str, pk_texts: list[str]) -> str:
    """The same primary key gives the same key in every sync (the id 1 and the id "1" share it); composite keys join
    with '.'. A key over 128 bytes keeps its start and gets a 128-bit hash of the whole key after a '~'."""
    key = prefix + DEDUP_MARK + ".".join([_pk_text(text) for text in pk_texts])
    if len(key.encode()) <= MAX_KEY_BYTES:
        return key
    keep = MAX_KEY_BYTES - KEY_HASH_CHARS - 1
    return f"{_truncate_utf8(key, keep)}{HASH_MARK}{_digest(key, KEY_HASH_CHARS)}"


def dedup_key_builder(prefix: str, primary_key: list[list[str]]) -> Callable[[dict[str, msgspec.Raw]], str]:
    """fields -> dedup_key(prefix, primary_key_texts(fields, primary_key)), chosen once per stream. A primary key of
    one top-level field whose value is an integer or a string _pk_text keeps (ids, UUIDs) takes a short path to the
    same key: it is the head and the value's text."""

    def any_key(fields: dict[str, msgspec.Raw]) -> str:
        return dedup_key(prefix, primary_key_texts(fields, primary_key))

    if len(primary_key) != 1 or len(primary_key[0]) != 1:
        return any_key
    field, head = primary_key[0][0], prefix + DEDUP_MARK
    room = MAX_KEY_BYTES - len(head.encode())  # the value's bytes that keep the key unhashed

    def one_field_key(fields: dict[str, msgspec.Raw]) -> str:
        raw = fields.get(field)
        if raw is not None and len(raw) <= room:
            value = bytes(raw)
            if value.isdigit():  # a valid JSON integer (the decoder checked it) without a sign
                return head + value.decode()
            plain = _UNESCAPED_PK_JSON.fullmatch(value)
            if plain is not None:
                return head + plain.group(1).decode()
        return any_key(fields)

    return one_field_key
