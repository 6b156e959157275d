"""Progress lines: per stream records, bytes and rate, request counts and quota, at the interval and not more often."""

from dataclasses import dataclass
from datetime import datetime, timezone

import pytest

from destination_kvdb.usage import RequestUsage
from destination_kvdb.progress import Progress


@dataclass
class Stream:
    label: str
    records: int = 0
    bytes: int = 0


def test_reports_per_stream_counts_and_rate_once_per_interval(clock, caplog):
    progress = Progress(interval_seconds=30)
    streams = [Stream("users", 1500, 3_000_000), Stream("public.orders", 500, 1_000_000)]

    clock.advance(10)
    progress.maybe_report(streams)
    assert caplog.messages == []  # before the interval: silent

    clock.advance(20)
    progress.maybe_report(streams)
    progress.maybe_report(streams)  # same moment: still one line
    assert caplog.messages == [
        "progress: 2000 records, 4.0 MB in 30.0 s (67 records/s); "
        "public.orders: 500 records, 1.0 MB, 17 records/s; users: 1500 records, 3.0 MB, 50 records/s"
    ]

    clock.advance(31)
    progress.maybe_report(streams)
    assert len(caplog.messages) == 2


def usage_after(kinds: dict[str, int], quota_headers: dict[str, str]) -> RequestUsage:
    usage = RequestUsage()
    for kind, count in kinds.items():
        for _ in range(count):
            usage.count(kind)
    usage.note_quota(quota_headers)
    return usage


RESET_AT = datetime(2024, 5, 1, 14, 0, 0, tzinfo=timezone.utc).timestamp()


@pytest.mark.parametrize(
    "kinds, quota_headers, expected",
    [
        pytest.param(
            {"write": 12, "delete": 1, "list": 1},
            {"X-Ratelimit-Remaining": "988", "X-Ratelimit-Reset": str(int(RESET_AT))},
            "; requests: 12 write, 1 list, 1 delete; quota left 988, resets 14:00:00 UTC",
            id="with-quota",
        ),
        pytest.param({"delete": 2, "write": 1}, {}, "; requests: 1 write, 2 delete", id="server-without-quota-headers"),
        pytest.param({}, {"X-Ratelimit-Remaining": "5"}, "; requests: none; quota left 5", id="quota-without-reset"),
    ],
)
def test_progress_and_summary_lines_include_requests_and_quota(clock, caplog, kinds, quota_headers, expected):
    progress = Progress(usage=usage_after(kinds, quota_headers), interval_seconds=30)
    streams = [Stream("users", 1000, 2_000_000)]

    clock.advance(30)
    progress.maybe_report(streams)
    progress.report("sync finished", streams)

    assert caplog.messages == [
        f"{heading}: 1000 records, 2.0 MB in 30.0 s (33 records/s); users: 1000 records, 2.0 MB, 33 records/s{expected}"
        for heading in ("progress", "sync finished")
    ]
