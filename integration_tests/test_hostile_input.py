"""Hostile input: corrupt protocol lines must end the sync with a clear error, never lose an acknowledged record.

Properties, for any valid input with one hostile line inserted:
  * the writer either finishes or raises an AirbyteTracedException with a message: never a bare exception;
  * documented tolerances (blank lines, unknown message types, LOG and non-status TRACE messages) are skipped;
  * when it fails, exactly the states before the bad line are echoed and exactly the records before it are
    stored: no state is ever echoed past a record that was not stored, and nothing after the bad line is written.

Most examples drive KvdbWriter in-process against a local server (fast); a few run the real connector for the
exit-code path.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Optional

import orjson
import pytest
from airbyte_cdk.models import ConfiguredAirbyteCatalogSerializer
from airbyte_cdk.utils.traced_exception import AirbyteTracedException
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from destination_kvdb import keys
from destination_kvdb.bucket import KvdbBucket
from destination_kvdb.client import RetryPolicy
from destination_kvdb.reader import LineBlocks, line_chunks
from destination_kvdb.settings import Settings
from destination_kvdb.writer import KvdbWriter
from integration_tests.support.connector import run_check, run_write
from integration_tests.support.kvdb import LocalBucket, config_for, new_secret
from integration_tests.support.messages import canonical, catalog, configured_stream, record, state_cursors, stream_state
from integration_tests.support.waiting import free_port
from local_kvdb import LocalKvdbServer


APPEND, DEDUP = "s", "d"
CATALOG = catalog(configured_stream(APPEND, "append"), configured_stream(DEDUP, "append_dedup", primary_key=[["id"]]))
CATALOG_MODEL = ConfiguredAirbyteCatalogSerializer.load(CATALOG)
HYPOTHESIS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow], database=None
)


@pytest.fixture(scope="module")
def server():
    with LocalKvdbServer() as running:
        yield running


def new_bucket(server: LocalKvdbServer) -> LocalBucket:
    secret = new_secret("hostile-")
    return LocalBucket(server, server.create_bucket(secret_key=secret), secret)


# ------------------------------------------------------------------------------------- valid input


def valid_messages(layout: list[list[str]]) -> list[dict]:
    """layout: per chunk, the stream of each record; a state after each chunk. Every record is unique."""
    messages, n = [], 0
    for cursor, streams in enumerate(layout):
        for stream in streams:
            data = {"n": n, "text": f"record {n}"} if stream == APPEND else {"id": n, "n": n}
            messages.append(record(stream, data))
            n += 1
        messages.append(stream_state(APPEND if cursor % 2 == 0 else DEDUP, cursor))
    return messages


layouts = st.lists(st.lists(st.sampled_from([APPEND, DEDUP]), min_size=0, max_size=6), min_size=1, max_size=5)


def line_of(message: dict) -> bytes:
    return orjson.dumps(message)


# ------------------------------------------------------------------------------------ hostile lines

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)), max_leaves=8)


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def nested_line(depth: int) -> bytes:
    """A record line whose data is `depth` objects deep, built as text (orjson cannot serialize > 254 levels)."""
    return b'{"type":"RECORD","record":{"stream":"s","emitted_at":1,"data":' + b'{"a":' * depth + b"1" + b"}" * depth + b"}}"


@st.composite
def truncated_lines(draw) -> tuple[bytes, str]:
    line = line_of(draw(st.sampled_from([record(APPEND, {"n": -1, "x": "y" * 30}), stream_state(APPEND, "c"), record(DEDUP, {"id": -1})])))
    return line[: draw(st.integers(1, len(line) - 1))], "error"


@st.composite
def wrong_type_lines(draw) -> tuple[bytes, str]:
    """A record or state with one field replaced by an arbitrary JSON value (often of the wrong type)."""
    value = draw(json_values)
    target = draw(st.sampled_from(["type", "record", "stream", "data", "namespace", "state", "state.type", "stream_state", "descriptor", "name", "trace", "status"]))
    if target in ("record", "stream", "data", "namespace"):
        message: dict = {"type": "RECORD", "record": {"stream": APPEND, "data": {"n": -1}, "emitted_at": 1}}
        if target == "record":
            message["record"] = value
        else:
            message["record"][target] = value
    elif target == "type":
        message = {"type": value, "record": {"stream": APPEND, "data": {"n": -1}}}
    elif target in ("trace", "status"):
        message = {"type": "TRACE", "trace": value} if target == "trace" else {"type": "TRACE", "trace": {"type": "STREAM_STATUS", "stream_status": value}}
    else:
        message = stream_state(APPEND, "wrong")
        state = message["state"]
        if target == "state":
            message["state"] = value
        elif target == "state.type":
            state["type"] = value
        elif target == "stream_state":
            state["stream"] = value
        elif target == "descriptor":
            state["stream"]["stream_descriptor"] = value
        else:
            state["stream"]["stream_descriptor"]["name"] = value
    return line_of(message), "either"


tolerated_lines = st.one_of(
    st.sampled_from([b"", b"   ", b"\t"]),
    st.builds(lambda kind: line_of({"type": kind, "whatever": [1, 2]}), st.text(min_size=1, max_size=10).filter(lambda k: k not in ("RECORD", "STATE", "TRACE"))),
    st.builds(lambda text: line_of({"type": "LOG", "log": {"level": "INFO", "message": text}}), st.text(max_size=50)),
    st.just(line_of({"type": "LOG", "log": {"level": "INFO", "message": "x" * 1_000_000}})),
    st.just(line_of({"type": "TRACE", "trace": {"type": "ERROR", "emitted_at": 1, "error": {"message": "source says hi"}}})),
    st.just(line_of({"type": "TRACE", "trace": {"type": "ESTIMATE", "emitted_at": 1, "estimate": {"name": "s", "type": "STREAM"}}})),
).map(lambda line: (line, "tolerated"))

error_lines = st.one_of(
    truncated_lines(),
    st.builds(lambda k: line_of(record(APPEND, {"n": -1, "big": "x" * k})), st.integers(16_400, 200_000)),  # over KvDB's value limit
    st.sampled_from([nested_line(501), nested_line(1_100), nested_line(10_000)]),  # over the limit of 500 levels
    st.builds(lambda at: (lambda line: line[:at] + b"\xff\xfe" + line[at:])(line_of(record(APPEND, {"n": -1, "t": "abcdef"}))), st.integers(30, 50)),
    st.builds(lambda name: line_of(record(name, {"n": -1})), st.text(min_size=1, max_size=20).filter(lambda n: n not in (APPEND, DEDUP))),
    st.builds(lambda ns: line_of(record(APPEND, {"n": -1}, namespace=ns)), st.text(min_size=1, max_size=10)),
    st.just(line_of(record(DEDUP, {"n": -1}))),  # no primary key
    st.just(line_of(record(DEDUP, {"id": None}))),
    st.sampled_from([b"[]", b"1", b'"RECORD"', b"null", b"{}", b'{"type":null}']),
).map(lambda line: line if isinstance(line, tuple) else (line, "error"))

random_lines = st.binary(min_size=1, max_size=200).filter(lambda raw: b"\n" not in raw).map(lambda raw: (raw, "either"))

hostile_lines = st.one_of(tolerated_lines, error_lines, wrong_type_lines(), random_lines)


# ------------------------------------------------------------------------------------- the checks


def write_in_process(server: LocalKvdbServer, bucket: LocalBucket, lines: list[bytes]) -> tuple[list[dict], Optional[BaseException]]:
    client = KvdbBucket(server.url, bucket.bucket_id, bucket.secret_key, max_request_bytes=32768, policy=RetryPolicy(max_retry_seconds=5))
    emitted: list[bytes] = []
    error: Optional[BaseException] = None
    try:
        settings = Settings.from_config({"max_requests_in_flight": 2, "oversized_records": "fail"})
        KvdbWriter(CATALOG_MODEL, client, emitted.append, settings, LineBlocks(line_chunks(lines))).write()
    except BaseException as raised:  # the property inspects what escaped
        error = raised
    finally:
        client.close()
    return [orjson.loads(state) for state in emitted], error


def expected_contents(messages: list[dict]) -> tuple[Counter, dict]:
    appended, deduped = Counter(), {}
    for message in messages:
        if message.get("type") == "RECORD":
            data = message["record"]["data"]
            if message["record"]["stream"] == APPEND:
                appended[canonical(data)] += 1
            else:
                deduped[keys.dedup_key(keys.stream_prefix(DEDUP), [str(data["id"])])] = data
    return appended, deduped


def stored_contents(server: LocalKvdbServer, bucket: LocalBucket) -> tuple[Counter, dict]:
    appended = Counter(canonical(v) for _, v in server.items(bucket.bucket_id, keys.stream_prefix(APPEND)))
    return appended, dict(server.items(bucket.bucket_id, keys.stream_prefix(DEDUP)))


def with_accepted(messages: list[dict], bad_at: int, line: bytes) -> list[dict]:
    """The input as the writer saw it when it accepted the odd line: a record or state it took for valid counts."""
    try:
        message = orjson.loads(line)
    except orjson.JSONDecodeError:
        return messages
    if type(message) is dict and message.get("type") in ("RECORD", "STATE"):
        return messages[:bad_at] + [message] + messages[bad_at:]
    return messages


def check_outcome(server, bucket, messages: list[dict], bad_at: int, expectation: str, echoed: list[dict], error, line: bytes = b"") -> None:
    """messages: the valid input; the hostile line went in before messages[bad_at]."""
    if error is None:
        messages = with_accepted(messages, bad_at, line)
    if isinstance(error, AirbyteTracedException) and "did not report COMPLETE" in error.message and expectation != "error":
        # The line was a (malformed) STREAM_STATUS trace: once any status is seen, every stream must report COMPLETE,
        # so the sync fails at the end of input, after storing and acknowledging everything (documented behaviour).
        assert state_cursors(echoed) == state_cursors([m for m in messages if m["type"] == "STATE"])
        assert stored_contents(server, bucket) == expected_contents(messages)
        return
    if error is not None:
        assert isinstance(error, AirbyteTracedException), f"bare {type(error).__name__}: {error!r}"[:500]
        assert isinstance(error.message, str) and error.message.strip(), "the error has a message"
        assert "Traceback" not in error.message and len(error.message) < 1000, error.message[:300]
    if expectation == "error":
        assert error is not None, "the hostile line was accepted"
    if expectation == "tolerated":
        assert error is None, f"a tolerated line failed the sync: {error!r}"[:500]
    processed = messages[:bad_at] if error is not None else messages
    assert state_cursors(echoed) == state_cursors([m for m in processed if m["type"] == "STATE"]), (
        "exactly the states before the bad line are echoed" if error is not None else "every state is echoed"
    )
    assert stored_contents(server, bucket) == expected_contents(processed), "exactly the records before the bad line are stored"


@HYPOTHESIS
@given(layout=layouts, hostile=hostile_lines, where=st.floats(0, 1))
@example(layout=[[APPEND, DEDUP], [APPEND]], hostile=(line_of({"type": "STATE", "state": {}}), "either"), where=0.5)  # a state of no stream
def test_one_hostile_line_never_crashes_the_writer_nor_acks_past_a_lost_record(server, layout, hostile, where):
    line, expectation = hostile
    messages = valid_messages(layout)
    bad_at = int(where * len(messages))
    lines = [line_of(m) for m in messages]
    lines.insert(bad_at, line)
    bucket = new_bucket(server)

    echoed, error = write_in_process(server, bucket, lines)

    check_outcome(server, bucket, messages, bad_at, expectation, echoed, error, line)


@HYPOTHESIS
@given(layout=layouts, hostile=st.lists(st.one_of(tolerated_lines, error_lines, random_lines), min_size=2, max_size=4), data=st.data())
def test_several_hostile_lines_stop_at_the_first_bad_one(server, layout, hostile, data):
    """Only the first non-tolerated line matters: nothing after it is stored or acknowledged."""
    messages = valid_messages(layout)
    positions = sorted(data.draw(st.lists(st.integers(0, len(messages)), min_size=len(hostile), max_size=len(hostile))))
    lines = [line_of(m) for m in messages]
    for offset, (position, (line, _)) in enumerate(zip(positions, hostile)):
        lines.insert(position + offset, line)
    bucket = new_bucket(server)

    echoed, error = write_in_process(server, bucket, lines)

    if error is None:
        assert all(expectation != "error" for _, expectation in hostile)
        check_outcome(server, bucket, messages, len(messages), "tolerated", echoed, None)
        return
    # The failing line is one of the hostile ones: find the first that fails on its own (next to a log message, since
    # an input of nothing but blank lines fails too: no input arrived).
    log = line_of({"type": "LOG", "log": {"level": "INFO", "message": "not an empty input"}})
    first_bad = next(
        position
        for position, (line, expectation) in zip(positions, hostile)
        if expectation == "error" or write_in_process(server, new_bucket(server), [line, log])[1] is not None
    )
    check_outcome(server, bucket, messages, first_bad, "error", echoed, error)


# ------------------------------------------------------------- wrong shapes that used to crash the writer

WRONG_SHAPES = {
    "state.stream is a string": line_of({"type": "STATE", "state": {"type": "STREAM", "stream": "s"}}),
    "stream_descriptor is a list": line_of({"type": "STATE", "state": {"type": "STREAM", "stream": {"stream_descriptor": ["s"]}}}),
    "record stream is a list": line_of({"type": "RECORD", "record": {"stream": [], "data": {"n": -1}}}),
    "record namespace is a list": line_of(record(APPEND, {"n": -1}, namespace=["x"])),  # type: ignore[arg-type]
    "state namespace is an object": line_of({"type": "STATE", "state": {"type": "STREAM", "stream": {"stream_descriptor": {"name": "s", "namespace": {"a": 1}}}}}),
    "stream_status is a string": line_of({"type": "TRACE", "trace": {"type": "STREAM_STATUS", "stream_status": "COMPLETE"}}),
    "status descriptor name is a list": line_of({"type": "TRACE", "trace": {"type": "STREAM_STATUS", "stream_status": {"stream_descriptor": {"name": ["s"]}, "status": "COMPLETE"}}}),
    "record data 2,000 levels deep": nested_line(2_000),  # deeper than the decoder goes
}


@pytest.mark.parametrize("line", WRONG_SHAPES.values(), ids=WRONG_SHAPES.keys())
def test_wrong_shapes_end_with_a_traced_error_after_acking_what_came_before(server, line):
    messages = valid_messages([[APPEND, DEDUP], [APPEND]])
    lines = [line_of(m) for m in messages]
    lines.insert(3, line)  # after the first state, before the second chunk
    bucket = new_bucket(server)

    echoed, error = write_in_process(server, bucket, lines)

    check_outcome(server, bucket, messages, 3, "error", echoed, error)


def test_big_integer_primary_keys_get_distinct_exact_keys(server):
    """Integers beyond 64 bits are keyed by their JSON spelling, so 2**64+1 and 2**64+2 never share a key."""
    ids = [2**64 + 1, 2**64 + 2]
    bucket = new_bucket(server)
    echoed, error = write_in_process(server, bucket, [b'{"type":"RECORD","record":{"stream":"d","data":{"id":%d}}}' % i for i in ids])
    assert error is None
    stored_keys = [key for key, _ in server.items(bucket.bucket_id, keys.stream_prefix(DEDUP))]
    assert stored_keys == [keys.dedup_key(keys.stream_prefix(DEDUP), [str(i)]) for i in ids]
    assert [server.raw_value(bucket.bucket_id, key) for key in stored_keys] == [b'{"id":%d}' % i for i in ids]


# ----------------------------------------------------------------------- the real connector's exit path


def secret_bucket(server: LocalKvdbServer) -> LocalBucket:
    return new_bucket(server)


SUBPROCESS_CASES = {
    "truncated record": (line_of(record(APPEND, {"n": -1, "x": "yyyy"}))[:25], "input line 4 is not valid JSON"),
    "invalid UTF-8": (b'{"type":"RECORD","record":{"stream":"s","data":{"n":-1,"t":"a\xff\xfeb"}}}', "input line 4 is not valid JSON"),
    "10,000 levels deep": (nested_line(10_000), "input line 4 is nested more than 500 levels deep"),
    "unknown stream": (line_of(record("nope", {"n": -1})), "input line 4 is a record of stream 'nope'"),
    "random bytes": (bytes(range(1, 10)) + bytes(range(11, 256)), "input line 4"),
    "unknown message type (tolerated)": (line_of({"type": "SOMETHING_NEW", "x": 1}), None),
    "blank line (tolerated)": (b"", None),
    "state.stream is a string": (line_of({"type": "STATE", "state": {"type": "STREAM", "stream": "s"}}), "input line 4"),
    "record data 2,000 levels deep": (nested_line(2_000), "input line 4 is nested more than 500 levels deep"),
}


@pytest.mark.parametrize("case", SUBPROCESS_CASES.values(), ids=SUBPROCESS_CASES.keys())
def test_the_connector_exits_with_a_traced_error_naming_the_bad_line(tmp_path, server, case):
    line, expected_message = case
    messages = valid_messages([[APPEND, DEDUP], [APPEND, DEDUP]])
    lines: list[Any] = list(messages)
    lines.insert(3, line)  # line 4: after the first state
    bucket = new_bucket(server)

    run = run_write(tmp_path, config_for(bucket), CATALOG, lines)  # parse_output: every stdout line is a JSON message

    if expected_message is None:
        assert run.exit_code == 0, run.stderr[-2000:]
        assert state_cursors(run.states) == [0, 1]
        assert stored_contents(server, bucket) == expected_contents(messages)
        return
    assert run.exit_code != 0
    (error,) = run.errors
    assert expected_message in error["message"], error["message"][:300]
    assert "Traceback" not in error["message"]
    assert state_cursors(run.states) == [0], "the state before the bad line, and no later one"
    assert stored_contents(server, bucket) == expected_contents(messages[:3])
    assert not [line for line in run.stdout.splitlines() if line.startswith("Traceback")], "no bare traceback on stdout"


@pytest.mark.parametrize("recursion_limit", [None, 20_000], ids=["default-recursion-limit", "raised-recursion-limit"])
def test_the_nesting_limit_is_500_levels_whatever_the_recursion_limit(tmp_path, server, recursion_limit):
    """One documented limit: data 500 levels deep is stored and reads back; 501 or 1,100 levels fail naming the
    line, with no state past it, even in an interpreter whose raised recursion limit lets the decoder go deeper."""
    for depth, line_number in ((501, 4), (1_100, 4), (500, None)):
        messages = valid_messages([[APPEND, DEDUP], [APPEND, DEDUP]])
        lines: list[Any] = list(messages)
        lines.insert(3, nested_line(depth))  # line 4: after the first state
        bucket = new_bucket(server)

        run = run_write(tmp_path, config_for(bucket), CATALOG, lines, recursion_limit=recursion_limit)

        if line_number is None:
            assert run.exit_code == 0, run.stderr[-2000:]
            assert state_cursors(run.states) == [0, 1]
            appended = server.items(bucket.bucket_id, keys.stream_prefix(APPEND))  # read back as Python objects
            assert [server.raw_value(bucket.bucket_id, key) for key, _ in appended][1] == b'{"a":' * depth + b"1" + b"}" * depth
            assert len(appended) == 3
            continue
        assert run.exit_code == 1, run.stderr[-2000:]
        (error,) = run.errors
        assert error["message"] == f"input line {line_number} is nested more than 500 levels deep, the limit for a record's data"
        assert state_cursors(run.states) == [0], "the state before the bad line, and no later one"
        assert stored_contents(server, bucket) == expected_contents(messages[:3])


# ------------------------------------------------------------------------------------------ secrets
# (the autouse no_secret_in_output fixture in conftest.py also scans every test's output for them)


def assert_secret_absent(secret: str, *texts: str) -> None:
    for text in texts:
        assert secret not in text, "the secret key leaked"


@pytest.fixture
def wrong_secret_bucket(server) -> LocalBucket:
    real = new_bucket(server)
    return LocalBucket(server, real.bucket_id, new_secret("wrong-"))


def test_wrong_secret_on_check_and_write_leaks_nothing(tmp_path, wrong_secret_bucket):
    bucket = wrong_secret_bucket
    check = run_check(tmp_path, config_for(bucket))
    assert check.connection_status["status"] == "FAILED"
    assert "secret key is wrong" in check.connection_status["message"]
    write = run_write(tmp_path, config_for(bucket), CATALOG, valid_messages([[APPEND]]))
    assert write.exit_code != 0 and write.states == []
    (error,) = write.errors
    assert error["failure_type"] == "config_error"
    assert_secret_absent(bucket.secret_key, check.stdout, check.stderr, write.stdout, write.stderr)


def test_unreachable_host_on_write_leaks_nothing(tmp_path, server):
    unreachable = LocalBucket(LocalKvdbServer(port=free_port()), "nobucket", new_secret("unreachable-"))
    write = run_write(tmp_path, config_for(unreachable, max_retry_seconds=1), CATALOG, valid_messages([[APPEND]]))
    assert write.exit_code != 0 and write.states == []
    (error,) = write.errors
    assert error["failure_type"] == "transient_error" and "could not reach KvDB" in error["message"]
    assert_secret_absent(unreachable.secret_key, write.stdout, write.stderr)
    # check against an unreachable host: covered (with the same assertion) by
    # test_faults.py::test_total_outage_check_fails_within_30_seconds_with_a_short_sentence, which takes its 15 s retry budget


@pytest.mark.parametrize("where", ["wrong secret", "unreachable host"])
def test_exception_texts_do_not_contain_the_secret(server, where):
    """In process: the AirbyteTracedException (message, internal message, str, repr, traced message) and the logs."""
    if where == "wrong secret":
        bucket = LocalBucket(server, new_bucket(server).bucket_id, new_secret("wrong-"))
        base_url = server.url
    else:
        bucket = LocalBucket(server, "nobucket", new_secret("unreachable-"))
        base_url = f"http://127.0.0.1:{free_port()}"
    client = KvdbBucket(base_url, bucket.bucket_id, bucket.secret_key, policy=RetryPolicy(max_retry_seconds=1, backoff_base_seconds=0.05))
    try:
        with pytest.raises(AirbyteTracedException) as raised:
            client.transact([b'{"set":"k","value":1}'])
        with pytest.raises(AirbyteTracedException) as raised_on_read:
            list(client.list_keys(""))
    finally:
        client.close()
    for error in (raised.value, raised_on_read.value):
        traced = error.as_airbyte_message()
        texts = [str(error), repr(error), error.message or "", error.internal_message or "", repr(traced), repr(error.__cause__), repr(error.__context__)]
        assert_secret_absent(bucket.secret_key, *texts)
    assert "_BearerAuth(****)" == repr(client.transport.session.auth)
