"""A platform simulator: jobs of several attempts, a resumable source, kills, and invariants after every attempt.

It drives the real connector (`main.py write`, stdin/stdout pipes) the way the Airbyte platform does:
every attempt of a job is a fresh process with the same
catalog; the source resumes from the last state the connector echoed; after a source that succeeded
the platform sends STREAM_STATUS COMPLETE for every catalog stream, after one that failed nothing.

Attempts are forked from a zygote (zygote.py), so each is a real process without the import cost.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from destination_kvdb import keys
from integration_tests.support.connector import ConnectorProcess
from integration_tests.support.kvdb import SECRETS_IN_USE, LocalBucket
from integration_tests.support.kvdb import seed as seed_keys
from integration_tests.support.neighbours import hostile_names, neighbour_keys
from integration_tests.support.zygote import ZYGOTE_TIMEOUT_SECONDS, Zygote

# The source and the platform


MAX_ATTEMPTS = 3
DEDUP_ID_POOL = 60
STALE_VERSION_SHARE = 0.1  # dedup ops followed, later in the attempt, by an older version of their id (record or delete)
PRECISE_CURSOR = "123456789012345678901234567890.00000000000000000001"  # wider than int64 and than a double
CDC_DELETED_AT = "_ab_cdc_deleted_at"
STREAM_KINDS = ("append", "dedup", "client_overwrite_gen", "client_overwrite_sync")
# A share of the random jobs runs against listings and reads that lag behind writes; small lags,
# since a lagged finalization waits until its listings catch up.
LAGGED_JOB_SHARE = 0.1
LAGS_SECONDS = (0.2, 0.3, 0.5)
# Drawn from generators of their own too: a share of the connections keep their keys under a key_prefix, and a
# share of the jobs send an access token minted for it (write, enumerate, delete) instead of the secret key.
PREFIXED_CONNECTION_SHARE = 0.5
KEY_PREFIX = "conn1/"
TOKEN_JOB_SHARE = 0.4
TOKEN_PERMISSIONS = ("write", "enumerate", "delete")
FENCES = ("__ab__!fence.", "__ab__~fence.")  # a finalization's fence: left behind only by an attempt killed while finalizing


def compact(message: object) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


@dataclass
class StreamHistory:
    """One stream of the connection and everything the model knows about what the bucket may hold for it."""

    name: str
    namespace: Optional[str]
    kind: str
    generation: int = 0
    # append-like streams: record id -> [data, times sent, acknowledged, removal ("no" | "maybe" | "yes")]
    records: dict[str, list] = field(default_factory=dict)
    # dedup streams: version -> data, and id -> the versions (None = absent) its key may hold
    versions: dict[int, dict] = field(default_factory=dict)
    possible: dict[int, set] = field(default_factory=dict)

    @property
    def dedup(self) -> bool:
        return self.kind == "dedup"

    @property
    def label(self) -> str:
        return f"{self.namespace}.{self.name}" if self.namespace else self.name

    def descriptor(self, rng: Optional[random.Random] = None) -> dict:
        """The stream descriptor; for a stream without namespace the platform may say null, "" or nothing."""
        if self.namespace:
            return {"name": self.name, "namespace": self.namespace}
        spelling = rng.choice(["absent", None, ""]) if rng else "absent"
        return {"name": self.name} if spelling == "absent" else {"name": self.name, "namespace": spelling}


@dataclass
class JobStream:
    """A stream's settings in one job's catalog, and the records its source sends in this job."""

    history: StreamHistory
    mode: str
    generation_id: Optional[int]
    minimum_generation_id: Optional[int]
    sync_id: int
    ops: list[dict]

    @property
    def truncates_by_generation(self) -> bool:
        return (self.minimum_generation_id or 0) > 0

    def keeps(self, data: dict) -> Optional[bool]:
        """Whether finalizing this stream keeps a record written earlier (None: it removes nothing at all)."""
        if self.mode == "overwrite":
            return data["gen"] == self.generation_id if self.generation_id else data["sync"] == self.sync_id
        if self.truncates_by_generation:
            return data["gen"] is not None and data["gen"] >= self.minimum_generation_id
        return None

    def configured(self) -> dict:
        history = self.history
        stream = {"name": history.name, "json_schema": {}, "supported_sync_modes": ["full_refresh", "incremental"]}
        if history.namespace:
            stream["namespace"] = history.namespace
        configured = {
            "stream": stream,
            "sync_mode": "incremental" if self.mode != "overwrite" else "full_refresh",
            "destination_sync_mode": self.mode,
            "generation_id": self.generation_id,
            "minimum_generation_id": self.minimum_generation_id,
            "sync_id": self.sync_id,
        }
        if history.dedup:
            configured["primary_key"] = [["id"]]
            configured["cursor_field"] = ["c"]
        return configured


@dataclass
class Line:
    """One input line and what it means to the model."""

    raw: bytes
    stream: Optional[int] = None  # index into the job's streams (records, STREAM states, statuses)
    op: Optional[int] = None  # index into the stream's ops (records)
    positions: Optional[dict[int, int]] = None  # states: where each covered stream resumes
    record_count: Optional[int] = None  # states: the destinationStats.recordCount the platform expects
    status: bool = False


@dataclass
class Job:
    number: int
    sync_id: int
    streams: list[JobStream]
    config: dict
    global_states: bool
    checkpoint_every: int
    precise_cursor: bool
    resume: dict[int, int] = field(default_factory=dict)  # stream index -> first op the source still has to send

    def catalog(self) -> dict:
        return {"streams": [stream.configured() for stream in self.streams]}

    def source_lines(self, rng: random.Random, state_ids: itertools.count) -> list[Line]:
        """What the source sends from the resume points on: records interleaved across streams, states every few records."""
        position = {index: self.resume.get(index, 0) for index in range(len(self.streams))}
        since_state = dict.fromkeys(position, 0)
        lines: list[Line] = []

        def state(indexes: list[int]) -> Line:
            count = sum(since_state[index] for index in indexes)
            for index in indexes:
                since_state[index] = 0
            covered = {index: position[index] for index in indexes}
            extra = {"lsn": "PRECISE"} if self.precise_cursor else {}
            if self.global_states:
                body = {
                    "type": "GLOBAL",
                    "global": {
                        "shared_state": {"job": self.number, **extra},
                        "stream_states": [
                            {"stream_descriptor": self.streams[index].history.descriptor(), "stream_state": {"pos": position[index]}}
                            for index in indexes
                        ],
                    },
                }
                stream = None
            else:
                (stream,) = indexes
                body = {
                    "type": "STREAM",
                    "stream": {
                        "stream_descriptor": self.streams[stream].history.descriptor(),
                        "stream_state": {"job": self.number, "pos": position[stream], **extra},
                    },
                }
            raw = compact({"type": "STATE", "state": {**body, "id": next(state_ids)}}).replace(b'"PRECISE"', PRECISE_CURSOR.encode())
            return Line(raw, stream=stream, positions=covered, record_count=count)

        everyone = list(position)
        while pending := [index for index in everyone if position[index] < len(self.streams[index].ops)]:
            index = rng.choice(pending)
            for _ in range(rng.randint(1, 5)):
                if position[index] == len(self.streams[index].ops):
                    break
                stream = self.streams[index]
                lines.append(Line(compact(record_message(stream, stream.ops[position[index]])), stream=index, op=position[index]))
                position[index] += 1
                since_state[index] += 1
                if self.global_states and sum(since_state.values()) >= self.checkpoint_every:
                    lines.append(state(everyone))
                elif not self.global_states and since_state[index] >= self.checkpoint_every:
                    lines.append(state([index]))
        if self.global_states:
            lines.append(state(everyone))
        else:
            lines += [state([index]) for index in everyone if since_state[index] or rng.random() < 0.3]
        return lines

    def statuses(self, rng: random.Random) -> list[Line]:
        """What the platform adds after a source that succeeded: COMPLETE for every catalog stream."""
        order = list(range(len(self.streams)))
        rng.shuffle(order)
        return [
            Line(compact(stream_status(self.streams[index].history.descriptor(rng))), stream=index, status=True)
            for index in order
        ]


def record_message(stream: JobStream, data: dict) -> dict:
    message = {"stream": stream.history.name, "data": data, "emitted_at": 1_700_000_000_000}
    if stream.history.namespace:
        message["namespace"] = stream.history.namespace
    return {"type": "RECORD", "record": message}


def stream_status(descriptor: dict) -> dict:
    status = {"stream_descriptor": descriptor, "status": "COMPLETE"}
    return {"type": "TRACE", "trace": {"type": "STREAM_STATUS", "emitted_at": 1_700_000_000_000, "stream_status": status}}


class Connection:
    """A connection's history: each job gets the next sync_id; refreshes and overwrite syncs bump generations."""

    def __init__(self, rng: random.Random, streams: list[StreamHistory], records_per_job: tuple[int, int]):
        self.rng = rng
        self.streams = streams
        self.records_per_job = records_per_job
        self.jobs = 0
        self.dedup_versions = itertools.count(1)

    @classmethod
    def random(cls, rng: random.Random, records_per_job: tuple[int, int]) -> "Connection":
        streams = []
        for index in range(rng.randint(2, 4)):
            kind = rng.choice(STREAM_KINDS)
            streams.append(StreamHistory(f"s{index}_{kind}", rng.choice([None, None, "crm"]), kind))
        return cls(rng, streams, records_per_job)

    def next_job(self, base_config: dict, actions: Optional[list[str]] = None) -> Job:
        """actions: per stream "incremental", "truncate" or "retain" (a refresh that keeps old data); random if None."""
        rng, number = self.rng, self.jobs
        self.jobs += 1
        sync_id = 1000 + number
        streams = []
        for index, history in enumerate(self.streams):
            action = actions[index] if actions else rng.choice(["incremental", "incremental", "truncate", "retain"])
            streams.append(self._job_stream(history, action, number, sync_id))
        config = {
            **base_config,
            "max_state_delay_seconds": rng.choice([0, 60]),
            "max_requests_in_flight": rng.choice([1, 4]),
            **({"max_request_bytes": 32768} if rng.random() < 0.7 else {}),
        }
        return Job(number, sync_id, streams, config, rng.random() < 0.3, rng.randint(1, 40), rng.random() < 0.15)

    def _job_stream(self, history: StreamHistory, action: str, job: int, sync_id: int) -> JobStream:
        if history.kind == "client_overwrite_sync":
            mode, generation, minimum = "overwrite", None, None
        elif history.kind == "client_overwrite_gen":
            history.generation += 1
            mode, generation, minimum = "overwrite", history.generation, history.generation
        else:
            mode = "append_dedup" if history.dedup else "append"
            if action != "incremental":
                history.generation += 1
            generation, minimum = history.generation, history.generation if action == "truncate" else 0
        snapshot = mode == "overwrite" or action != "incremental"  # full refresh: the source sends everything it has
        count = self.rng.randint(*self.records_per_job)
        if history.dedup:
            ids = self.rng.sample(range(DEDUP_ID_POOL), min(count, DEDUP_ID_POOL)) if snapshot else [
                self.rng.randrange(DEDUP_ID_POOL) for _ in range(count)
            ]
            ops = [self._dedup_op(history, record_id, job, generation, deleted=not snapshot and self.rng.random() < 0.1) for record_id in ids]
            ops = self._out_of_order(history, ops, job, generation)
        else:
            ops = [self._append_record(history, f"{job}.{n}", job, generation, sync_id) for n in range(count)]
        return JobStream(history, mode, generation, minimum, sync_id, ops)

    def _out_of_order(self, history: StreamHistory, ops: list[dict], job: int, generation: int) -> list[dict]:
        """Sources may send an older version after a newer one inside an attempt (partitions read in parallel, slices
        finishing out of order): a stale record or a stale delete, its cursor just below the newer one's."""
        for newer in list(ops):
            if self.rng.random() < STALE_VERSION_SHARE:
                stale = self._dedup_op(history, newer["id"], job, generation, self.rng.random() < 0.5, cursor=newer["c"] - 0.5)
                ops.insert(self.rng.randint(ops.index(newer) + 1, len(ops)), stale)
        return ops

    def _pad(self) -> str:
        return "p" * self.rng.randrange(300)

    def _append_record(self, history: StreamHistory, record_id: str, job: int, generation: Optional[int], sync_id: int) -> dict:
        data = {"id": record_id, "job": job, "gen": generation, "sync": sync_id, "pad": self._pad()}
        history.records[record_id] = [data, 0, False, "no"]
        return data

    def _dedup_op(self, history: StreamHistory, record_id: int, job: int, generation: int, deleted: bool, cursor: Optional[float] = None) -> dict:
        version = next(self.dedup_versions)
        data = {"id": record_id, "v": version, "c": version if cursor is None else cursor, "job": job, "gen": generation, "pad": self._pad()}
        if deleted:
            data[CDC_DELETED_AT] = "2024-05-01T00:00:00Z"
        history.versions[version] = data
        history.possible.setdefault(record_id, {None})
        return data


# One attempt: the connector process, its input, and what it printed


@dataclass(frozen=True)
class AttemptPlan:
    """What goes wrong in an attempt, as fractions of its input, so a plan fits any resume point.

    source_fails_at: None, or where the source dies (0.0 = at start-up: empty input); no statuses follow.
    kill_at: None, or after which fraction of the lines (statuses included) the connector is SIGKILLed.
    """

    source_fails_at: Optional[float] = None
    kill_at: Optional[float] = None

    @classmethod
    def random(cls, rng: random.Random) -> "AttemptPlan":
        fails = None if rng.random() < 0.65 else (0.0 if rng.random() < 0.25 else rng.random())
        kill = None if rng.random() < 0.7 else (1.0 if rng.random() < 0.25 else rng.random())  # 1.0: while it finalizes
        return cls(fails, kill)


@dataclass
class AttemptResult:
    lines: list[Line]  # every line the platform sent (or would have, had the kill not come first)
    written: int  # how many of them were written before the kill (all, without one)
    exit_code: int
    stdout: bytes
    stderr: bytes

    @property
    def killed(self) -> bool:
        return self.exit_code == -signal.SIGKILL


def run_attempt(zygote: Zygote, args: list[str], lines: list[Line], kill_after: Optional[int]) -> AttemptResult:
    """Feed the lines to a fresh connector through its stdin pipe; SIGKILL it after kill_after lines if given."""
    process = ConnectorProcess(args, forked_from=zygote)
    written = len(lines) if kill_after is None else kill_after
    try:
        process.send(line.raw for line in lines[:written])
    except BrokenPipeError:
        pass  # it ended on its own; its exit code tells why
    if kill_after is not None:
        process.send_signal(signal.SIGKILL)
    run = process.finish(ZYGOTE_TIMEOUT_SECONDS, input_open=kill_after is not None)
    return AttemptResult(lines, written, run.exit_code, process.stdout_bytes, process.stderr_bytes)


def wait_until_server_idle(server, timeout: float = 30) -> None:
    """Wait until the server has finished every connection: a killed connector's request may still be landing."""
    deadline = time.monotonic() + timeout
    while True:
        if not server.open_connections():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the local KvDB server still had open connections after {timeout} s")
        time.sleep(0.01)


# Checks


_DESTINATION_STATS = re.compile(rb',"destinationStats":\{[^{}]*\}|"destinationStats":\{[^{}]*\},?')


def check_echoes(result: AttemptResult) -> tuple[list[Line], list[str]]:
    """The states the connector echoed, matched to the ones sent: same bytes except destinationStats, in order."""
    sent = [line for line in result.lines[: result.written] if line.positions is not None]
    printed = result.stdout.splitlines()
    if result.killed and printed and not result.stdout.endswith(b"\n"):
        printed.pop()  # killed in the middle of a line
    echoed, problems = [], []
    for raw in printed:
        try:
            message = json.loads(raw)
        except ValueError:
            problems.append(f"protocol: stdout line is not JSON: {raw[:120]!r}")
            continue
        if message.get("type") != "STATE":
            continue
        if len(echoed) == len(sent):
            problems.append(f"echo: a state that was never sent (or sent once, echoed twice): {raw[:160]!r}")
            break
        expected = sent[len(echoed)]
        if _DESTINATION_STATS.sub(b"", raw, count=1) != expected.raw:
            problems.append(f"echo: state {len(echoed) + 1} differs from the one sent:\n  sent   {expected.raw[:200]!r}\n  echoed {raw[:200]!r}")
            break
        count = (message["state"].get("destinationStats") or {}).get("recordCount")
        if count != expected.record_count:
            problems.append(f"echo: state {len(echoed) + 1} has recordCount {count}, the platform counted {expected.record_count}")
        echoed.append(expected)
    if not result.killed and len(echoed) < len(sent) and not problems:
        problems.append(f"echo: {len(sent) - len(echoed)} of {len(sent)} states sent were never echoed")
    return echoed, problems


def stream_prefix(history: StreamHistory, key_prefix: str = "") -> str:
    """The documented key layout: <key_prefix>[<namespace part>__ns__]<name part>__ab__ (hostile names escaped)."""
    return keys.stream_prefix(history.name, history.namespace, key_prefix)


def check_bucket(history: StreamHistory, items: list[tuple[str, object]]) -> list[str]:
    return _check_dedup(history, items) if history.dedup else _check_append(history, items)


def _without_fences(items: list[tuple[str, object]]) -> list[tuple[str, object]]:
    return [(key, value) for key, value in items if not any(fence in key for fence in FENCES)]


def _check_append(history: StreamHistory, items: list[tuple[str, object]]) -> list[str]:
    problems = []
    counts: Counter = Counter()
    for key, value in _without_fences(items):
        entry = history.records.get(value.get("id")) if isinstance(value, dict) else None
        if entry is None or entry[0] != value:
            problems.append(f"{history.label}: unknown value under {key}: {str(value)[:120]}")
        else:
            counts[value["id"]] += 1
    for record_id, (data, sends, acknowledged, removal) in history.records.items():
        low = 1 if acknowledged and removal == "no" else 0
        high = 0 if removal == "yes" else sends
        if not low <= counts[record_id] <= high:
            why = (
                "acknowledged but lost" if counts[record_id] < low
                else "should have been removed by a completed truncation" if removal == "yes"
                else f"stored more often than sent ({sends})"
            )
            problems.append(f"{history.label}: record {record_id} (gen {data['gen']}, sync {data['sync']}) stored {counts[record_id]}x: {why}")
    return problems


def _check_dedup(history: StreamHistory, items: list[tuple[str, object]]) -> list[str]:
    problems, seen = [], {}
    for key, value in _without_fences(items):
        version = value.get("v") if isinstance(value, dict) else None
        if history.versions.get(version) != value or value.get(CDC_DELETED_AT) is not None:
            problems.append(f"{history.label}: unknown value under {key}: {str(value)[:120]}")
        elif value["id"] in seen:
            problems.append(f"{history.label}: id {value['id']} under two keys: {seen[value['id']]} and {key}")
        else:
            seen[value["id"]] = key
            if version not in history.possible[value["id"]]:
                problems.append(f"{history.label}: id {value['id']} holds version {version} (gen {value['gen']}), expected one of {_versions(history, value['id'])}")
    for record_id, possible in history.possible.items():
        if record_id not in seen and None not in possible:
            problems.append(f"{history.label}: id {record_id} is missing, expected one of {_versions(history, record_id)}")
    return problems


def _versions(history: StreamHistory, record_id: int) -> str:
    return ", ".join(
        "absent" if version is None else f"v{version} (gen {history.versions[version]['gen']})"
        for version in sorted(history.possible[record_id], key=lambda version: version or 0)
    )


# The model: what each attempt may have changed


def update_model(job: Job, result: AttemptResult, echoed: list[Line]) -> list[int]:
    """Apply an attempt to every stream's model; return the indexes of the streams the connector must have completed."""
    covered_upto = result.lines.index(echoed[-1]) + 1 if echoed else 0
    for line in echoed:
        job.resume.update(line.positions)
    written = result.lines[: result.written]
    statuses_arrived = any(line.status for line in written)
    completed = []
    for index, stream in enumerate(job.streams):
        sent = [(number, stream.ops[line.op]) for number, line in enumerate(written) if line.stream == index and line.op is not None]
        history = stream.history
        if history.dedup:
            _dedup_sent(history, sent, covered_upto)
        else:
            for number, data in sent:
                entry = history.records[data["id"]]
                entry[1] += 1
                entry[2] = entry[2] or number < covered_upto
        got_complete = any(line.status and line.stream == index for line in written)
        named = any(line.stream == index for line in written)  # a record, STREAM state or status: silence never deletes
        clean_end = not result.killed and not statuses_arrived and not stream.truncates_by_generation and named
        if (got_complete and not result.killed) or clean_end:
            completed.append(index)
            _finalize(stream, certain=True)
        elif got_complete:  # killed after COMPLETE was written: the removal may have run, in part or fully
            _finalize(stream, certain=False)
    return completed


def _dedup_sent(history: StreamHistory, sent: list[tuple[int, dict]], covered_upto: int) -> None:
    """Per id, the key holds what the newest version (highest cursor `c`, ties: the later) among the ops this attempt
    sent up to the last covered one, or up to any later one, left (with none covered: up to any, or what it held)."""
    by_id: dict[int, list[tuple[int, dict]]] = {}
    for number, data in sent:
        by_id.setdefault(data["id"], []).append((number, data))
    for record_id, ops in by_id.items():
        results, newest = [], None
        for _, data in ops:
            newest = data if newest is None or data["c"] >= newest["c"] else newest
            results.append(None if newest.get(CDC_DELETED_AT) else newest["v"])
        covered = [position for position, (number, _) in enumerate(ops) if number < covered_upto]
        if covered:
            history.possible[record_id] = set(results[covered[-1] :])
        else:
            history.possible[record_id] |= set(results)


def _finalize(stream: JobStream, certain: bool) -> None:
    history = stream.history
    if history.dedup:
        for record_id, possible in history.possible.items():
            after = {None if version is not None and stream.keeps(history.versions[version]) is False else version for version in possible}
            history.possible[record_id] = after if certain else possible | after
        return
    for entry in history.records.values():
        if entry[3] != "yes" and stream.keeps(entry[0]) is False:
            entry[3] = "yes" if certain else "maybe"


def check_exit(job: Job, result: AttemptResult, completed: list[int]) -> list[str]:
    """Not killed: exit 0 exactly when every stream completed; otherwise a transient error naming the others."""
    if result.killed:
        return []
    excused = _left_by_silence(job, result)
    incomplete = [job.streams[index].history for index in range(len(job.streams)) if index not in completed + excused]
    if not incomplete:
        return [] if result.exit_code == 0 else [f"exit: code {result.exit_code} although every stream completed: {_last_error(result)}"]
    if result.exit_code == 0:
        return [f"exit: code 0 although {', '.join(h.label for h in incomplete)} did not complete"]
    error = _last_error(result)
    if not error or error.get("failure_type") != "transient_error" or not all(h.name in error.get("message", "") for h in incomplete):
        return [f"exit: expected a transient error naming {', '.join(h.label for h in incomplete)}, got {error}"]
    return []


def _left_by_silence(job: Job, result: AttemptResult) -> list[int]:
    """Streams a clean end of a non-empty input without statuses leaves alone because the input never named them:
    kept with a warning, not a failure (an empty input fails, naming every stream)."""
    written = result.lines[: result.written]
    if not written or any(line.status for line in written):
        return []
    named = {line.stream for line in written}
    return [index for index, stream in enumerate(job.streams) if not stream.truncates_by_generation and index not in named]


def _last_error(result: AttemptResult) -> Optional[dict]:
    errors = []
    for raw in result.stdout.splitlines():
        try:
            message = json.loads(raw)
        except ValueError:
            continue
        if message.get("type") == "TRACE" and message["trace"].get("type") == "ERROR":
            errors.append(message["trace"]["error"])
    return errors[-1] if errors else None


# Jobs and histories


class SimulationFailure(AssertionError):
    pass


class Simulator:
    """Runs a connection's jobs against one bucket and checks every attempt; raises SimulationFailure with a rerun hint."""

    def __init__(self, zygote: Zygote, server, bucket_id: str, base_config: dict, work_dir: Path, seed: int,
                 record_output: Callable[[str], None] = lambda text: None, streams: Optional[list[StreamHistory]] = None,
                 records_per_job: tuple[int, int] = (0, 120), read_lag_seconds: Optional[float] = None):
        """read_lag_seconds: the server's read lag in every job (None: LAGGED_JOB_SHARE of the jobs get one of LAGS_SECONDS)."""
        self.zygote = zygote
        self.server = server
        self.bucket_id = bucket_id
        self.base_config = base_config
        self.work_dir = work_dir
        self.seed = seed
        self.record_output = record_output
        self.read_lag_seconds = read_lag_seconds
        self.key_prefix = KEY_PREFIX if random.Random(f"{seed}/key_prefix").random() < PREFIXED_CONNECTION_SHARE else ""
        if self.key_prefix:
            self.base_config = {**base_config, "key_prefix": self.key_prefix}
        rng = random.Random(seed)
        self.connection = Connection(rng, streams, records_per_job) if streams else Connection.random(rng, records_per_job)
        if not streams:
            hostile_names(seed, self.connection.streams)
        self.neighbour = neighbour_keys(seed, self.connection.streams, self.key_prefix) if not streams else {}
        if self.neighbour:
            seed_keys(LocalBucket(server, bucket_id, base_config["secret_key"]), self.neighbour)
        self.state_ids = itertools.count(1)
        self.events: Counter = Counter()  # what the random runs covered: kills, failures, completed truncations...

    def run_job(self, actions: Optional[list[str]] = None, plans: Optional[list[AttemptPlan]] = None) -> bool:
        """One job of up to MAX_ATTEMPTS attempts (plans: scripted attempts, else random); True if an attempt succeeded."""
        job = self.connection.next_job(self.base_config, actions)
        job.config = self._credentials(job)
        config_path = self.work_dir / f"config-{job.number}.json"
        catalog_path = self.work_dir / f"catalog-{job.number}.json"
        config_path.write_text(json.dumps(job.config))
        catalog_path.write_text(json.dumps(job.catalog()))
        args = ["write", "--config", str(config_path), "--catalog", str(catalog_path)]
        lag = self._lag(job)
        self.server.set_faults(read_lag_seconds=lag)
        try:
            return self._attempts(job, args, plans, lag)
        finally:
            self.server.set_faults(read_lag_seconds=0)

    def _lag(self, job: Job) -> float:
        """Drawn from its own generator, so lagged jobs leave the histories of the seeds as they were."""
        if self.read_lag_seconds is not None:
            return self.read_lag_seconds
        rng = random.Random(f"{self.seed}/{job.number}/lag")
        return rng.choice(LAGS_SECONDS) if rng.random() < LAGGED_JOB_SHARE else 0.0

    def _credentials(self, job: Job) -> dict:
        """The job's config, with an access token for key_prefix instead of the secret key in a share of the jobs."""
        if random.Random(f"{self.seed}/{job.number}/token").random() >= TOKEN_JOB_SHARE:
            return job.config
        token = self.server.mint_token(self.bucket_id, self.key_prefix, TOKEN_PERMISSIONS, ttl=86_400)
        SECRETS_IN_USE.add(token)
        return {**{name: value for name, value in job.config.items() if name != "secret_key"}, "access_token": token}

    def _attempts(self, job: Job, args: list[str], plans: Optional[list[AttemptPlan]], lag: float) -> bool:
        for attempt in range(1, (len(plans) if plans else MAX_ATTEMPTS) + 1):
            rng = random.Random(f"{self.seed}/{job.number}/{attempt}")
            plan = plans[attempt - 1] if plans else AttemptPlan.random(rng)
            lines = job.source_lines(rng, self.state_ids)
            if plan.source_fails_at is None:
                lines += job.statuses(rng)
            else:
                lines = lines[: round(plan.source_fails_at * len(lines))]
            kill_after = None if plan.kill_at is None else round(plan.kill_at * len(lines))
            result = run_attempt(self.zygote, args, lines, kill_after)
            self.record_output(result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace"))
            wait_until_server_idle(self.server)
            echoed, problems = check_echoes(result)
            completed = update_model(job, result, echoed)
            problems += check_exit(job, result, completed)
            for stream in job.streams:
                items = self.server.items(self.bucket_id, stream_prefix(stream.history, self.key_prefix))
                problems += check_bucket(stream.history, [(key, value) for key, value in items if key not in self.neighbour])
            held = dict(self.server.items(self.bucket_id))
            outside = [key for key in held if not key.startswith(self.key_prefix) and key not in self.neighbour]
            problems += [f"a key outside key_prefix {self.key_prefix!r}: {key}" for key in outside]
            problems += [f"another connection's key was changed or removed: {key}" for key, value in self.neighbour.items() if held.get(key) != value]
            if problems:
                raise SimulationFailure(self._report(job, attempt, plan, result, problems, lag))
            self._count(job, plan, result, completed, lag)
            if plan.source_fails_at is None and result.exit_code == 0:
                return True
        return False

    def _count(self, job: Job, plan: AttemptPlan, result: AttemptResult, completed: list[int], lag: float) -> None:
        self.events["attempts"] += 1
        self.events["attempts with lagging listings"] += lag > 0
        self.events["attempts with an access token"] += "access_token" in job.config
        self.events["attempts under a key_prefix"] += bool(self.key_prefix)
        self.events["attempts next to a nested connection"] += bool(self.neighbour)
        self.events["killed"] += result.killed
        self.events["killed after a COMPLETE"] += result.killed and any(line.status for line in result.lines[: result.written])
        self.events["source failed"] += plan.source_fails_at is not None
        self.events["source failed at start-up"] += plan.source_fails_at == 0.0
        for line in result.lines[: result.written]:
            data = job.streams[line.stream].ops[line.op] if line.op is not None else {}
            if data.get("c", data.get("v")) != data.get("v"):  # a stale dedup version: sent after a newer one
                self.events["stale dedup deletes sent" if data.get(CDC_DELETED_AT) else "stale dedup records sent"] += 1
        for index in completed:
            if job.streams[index].keeps({"gen": -1, "sync": -1}) is False:
                self.events["truncations completed"] += 1
                self.events["truncations completed under lag"] += lag > 0
        if result.exit_code > 0:
            self.events["exited non-zero"] += 1

    def _report(self, job: Job, attempt: int, plan: AttemptPlan, result: AttemptResult, problems: list[str], lag: float) -> str:
        streams = "; ".join(
            f"{s.history.label}: {s.mode} gen {s.generation_id} min {s.minimum_generation_id} ({len(s.ops)} records)" for s in job.streams
        )
        stderr_tail = result.stderr.decode(errors="replace")[-1500:]
        return (
            f"seed {self.seed}, job {job.number}, attempt {attempt} ({plan}; exit code {result.exit_code}; "
            f"{result.written}/{len(result.lines)} lines written; {'GLOBAL' if job.global_states else 'STREAM'} states every "
            f"{job.checkpoint_every}; config delay {job.config['max_state_delay_seconds']} s, "
            f"{job.config.get('max_request_bytes', 'default')} bytes; listings lag {lag} s; key_prefix {self.key_prefix!r}, "
            f"{'access token' if 'access_token' in job.config else 'secret key'})\n  streams: {streams}\n  "
            + "\n  ".join(problems[:10])
            + (f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else "")
            + f"\n  rerun: PLATFORM_SIM_SEED={self.seed} pytest integration_tests/test_platform_sim.py -k random\n"
            f"  connector stderr (end):\n{stderr_tail}"
        )


