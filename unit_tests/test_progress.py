"""Progress lines: per stream records, bytes and rate, at the interval and not more often."""

import logging
from dataclasses import dataclass

from destination_kvdb import progress as progress_module
from destination_kvdb.progress import Progress


@dataclass
class Stream:
    label: str
    records: int = 0
    bytes: int = 0


def test_reports_per_stream_counts_and_rate_once_per_interval(mocker, caplog):
    now = mocker.patch.object(progress_module.time, "monotonic", return_value=100.0)
    progress = Progress(interval_seconds=30)
    streams = [Stream("users", 1500, 3_000_000), Stream("public.orders", 500, 1_000_000)]
    caplog.set_level(logging.INFO, logger="airbyte")

    now.return_value = 110.0
    progress.maybe_report(streams)
    assert caplog.messages == []  # before the interval: silent

    now.return_value = 130.0
    progress.maybe_report(streams)
    progress.maybe_report(streams)  # same moment: still one line
    assert caplog.messages == [
        "progress: 2000 records, 4.0 MB in 30.0 s (67 records/s); "
        "public.orders: 500 records, 1.0 MB, 17 records/s; users: 1500 records, 3.0 MB, 50 records/s"
    ]

    now.return_value = 161.0
    progress.maybe_report(streams)
    assert len(caplog.messages) == 2
