"""Airbyte protocol messages and catalogs as the platform sends them, and what the connector prints, parsed."""

from __future__ import annotations

import json
from typing import Any, Iterable, Optional

import orjson


def record(stream: str, data: dict, namespace: Optional[str] = None, emitted_at: int = 1_700_000_000_000) -> dict:
    message: dict[str, Any] = {"stream": stream, "data": data, "emitted_at": emitted_at}
    if namespace is not None:
        message["namespace"] = namespace
    return {"type": "RECORD", "record": message}


def stream_state(stream: str, cursor: Any, namespace: Optional[str] = None, **extra: Any) -> dict:
    descriptor = {"name": stream, **({"namespace": namespace} if namespace is not None else {})}
    state = {"type": "STREAM", "stream": {"stream_descriptor": descriptor, "stream_state": {"cursor": cursor}}, **extra}
    return {"type": "STATE", "state": state}


def global_state(cursor: Any, **extra: Any) -> dict:
    return {"type": "STATE", "state": {"type": "GLOBAL", "global": {"shared_state": {"cursor": cursor}, "stream_states": []}, **extra}}


def legacy_state(cursor: Any) -> dict:
    return {"type": "STATE", "state": {"data": {"cursor": cursor}}}


def stream_status(stream: str, status: str = "COMPLETE", namespace: Optional[str] = None) -> dict:
    descriptor = {"name": stream, **({"namespace": namespace} if namespace is not None else {})}
    return {
        "type": "TRACE",
        "trace": {"type": "STREAM_STATUS", "emitted_at": 1, "stream_status": {"stream_descriptor": descriptor, "status": status}},
    }


def configured_stream(
    name: str,
    mode: str = "append",
    primary_key: Optional[list[list[str]]] = None,
    namespace: Optional[str] = None,
    generation_id: Optional[int] = None,
    minimum_generation_id: Optional[int] = None,
    sync_id: Optional[int] = None,
) -> dict:
    stream: dict[str, Any] = {"name": name, "json_schema": {}, "supported_sync_modes": ["full_refresh", "incremental"]}
    if namespace is not None:
        stream["namespace"] = namespace
    configured: dict[str, Any] = {
        "stream": stream,
        "sync_mode": "incremental" if mode != "overwrite" else "full_refresh",
        "destination_sync_mode": mode,
        "generation_id": generation_id,
        "minimum_generation_id": minimum_generation_id,
        "sync_id": sync_id,
    }
    if primary_key is not None:
        configured["primary_key"] = primary_key
    return configured


def catalog(*streams: dict) -> dict:
    return {"streams": list(streams)}


def encode_lines(messages: Iterable[Any]) -> bytes:
    """Dicts become JSON lines; bytes and str pass through as raw lines (for corrupt input)."""
    lines = []
    for message in messages:
        if isinstance(message, bytes):
            lines.append(message)
        elif isinstance(message, str):
            lines.append(message.encode())
        else:
            lines.append(json.dumps(message).encode())
    return b"".join(line + b"\n" for line in lines)


def parse_output(stdout: str) -> list[dict]:
    """Every stdout line must be a JSON protocol message: anything else is a protocol violation."""
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def canonical(value: Any) -> bytes:
    """One spelling per JSON value (sorted keys, no spaces): for comparing values and counting them in a multiset."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def state_cursor(state: dict) -> Any:
    """A stream state message's cursor; None for a state without one (e.g. a bare `{"type":"STATE","state":{}}`)."""
    found = state
    for field in ("state", "stream", "stream_state", "cursor"):
        found = found.get(field) if isinstance(found, dict) else None
    return found


def state_cursors(states: list[dict]) -> list:
    """The cursors of these state messages, in order."""
    return [state_cursor(state) for state in states]
