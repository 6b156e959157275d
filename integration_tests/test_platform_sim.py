"""The connector driven the way the Airbyte platform drives it: jobs of several attempts with a
resumable source, source failures, SIGKILLs, refreshes and overwrite syncs (see support/platform_sim.py).

After every attempt the bucket must agree with what the source sent and the connector echoed:
nothing acknowledged is lost, completed truncations leave only the current sync's records,
incomplete ones keep everything, and the exit code says whether every stream completed.

Rerun one failing history with PLATFORM_SIM_SEED=<seed>; run more with PLATFORM_SIM_HISTORIES=<n> (4 by default, so
the everyday suite stays quick; CI runs 20);
test another checkout's connector with PLATFORM_SIM_CONNECTOR_ROOT=<path>.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from integration_tests.support.connector import Run, captured_output, run_write, shared_zygote, write_json
from integration_tests.support.kvdb import config_for, stored
from integration_tests.support.messages import (
    catalog,
    configured_stream,
    parse_output,
    record,
    stream_state,
    stream_status,
)
from integration_tests.support.platform_sim import AttemptPlan, Line, Simulator, StreamHistory, compact, run_attempt
from integration_tests.support.zygote import Zygote

JOBS_PER_HISTORY = 10
SEEDS = [int(os.environ["PLATFORM_SIM_SEED"])] if "PLATFORM_SIM_SEED" in os.environ else range(
    int(os.environ.get("PLATFORM_SIM_HISTORIES", "4"))
)


@pytest.fixture(scope="module")
def zygote(tmp_path_factory):
    """The test process's zygote, or one running another checkout's connector (PLATFORM_SIM_CONNECTOR_ROOT)."""
    if "PLATFORM_SIM_CONNECTOR_ROOT" not in os.environ:
        yield shared_zygote()
        return
    started = Zygote(tmp_path_factory.mktemp("zygote"), Path(os.environ["PLATFORM_SIM_CONNECTOR_ROOT"]))
    yield started
    started.close()


@pytest.fixture
def simulator(zygote, kvdb_bucket, tmp_path):
    """Builds a Simulator on a fresh bucket; the connector's output goes to the secret scan."""

    def build(seed: int, **options) -> Simulator:
        config = config_for(kvdb_bucket, max_retry_seconds=10)
        return Simulator(
            zygote, kvdb_bucket.server, kvdb_bucket.bucket_id, config, tmp_path, seed, captured_output.append, **options
        )

    return build


@pytest.mark.parametrize("seed", SEEDS)
def test_random_connection_history(simulator, seed):
    sim = simulator(seed)
    for _ in range(JOBS_PER_HISTORY):
        sim.run_job()
    assert sim.events["attempts"] >= JOBS_PER_HISTORY


FAILS_AT_START_UP = AttemptPlan(source_fails_at=0.0)
FAILS_MIDWAY = AttemptPlan(source_fails_at=0.5)
KILLED_MIDWAY = AttemptPlan(kill_at=0.5)
SUCCEEDS = AttemptPlan()


def truncating_streams() -> list[StreamHistory]:
    return [StreamHistory("users", None, "append"), StreamHistory("accounts", "crm", "dedup")]


def test_failed_refresh_attempts_keep_the_previous_generation_until_one_completes(simulator):
    sim = simulator(1, streams=truncating_streams(), records_per_job=(40, 120))
    assert sim.run_job(["truncate", "truncate"], [SUCCEEDS])
    # every attempt of the next refresh fails: at start-up (empty input), midway, and killed midway
    assert not sim.run_job(["truncate", "truncate"], [FAILS_AT_START_UP, FAILS_MIDWAY, KILLED_MIDWAY])
    assert sim.run_job(["truncate", "truncate"], [FAILS_MIDWAY, SUCCEEDS])


@pytest.mark.parametrize("kind", ["client_overwrite_gen", "client_overwrite_sync"])
def test_an_overwrite_sync_resumed_over_three_attempts_keeps_every_attempts_records(simulator, kind):
    sim = simulator(2, streams=[StreamHistory("users", None, kind), StreamHistory("events", None, "append")], records_per_job=(40, 120))
    assert sim.run_job(["incremental", "incremental"], [SUCCEEDS])
    assert sim.run_job(["incremental", "incremental"], [FAILS_MIDWAY, KILLED_MIDWAY, SUCCEEDS])


def test_refresh_with_retain_keeps_every_generation(simulator):
    sim = simulator(3, streams=truncating_streams(), records_per_job=(40, 120))
    assert sim.run_job(["retain", "retain"], [SUCCEEDS])
    assert sim.run_job(["retain", "retain"], [KILLED_MIDWAY, SUCCEEDS])
    assert sim.run_job(["incremental", "incremental"], [FAILS_AT_START_UP, SUCCEEDS])


def test_dedup_versions_out_of_cursor_order_and_stale_deletes_inside_attempts(simulator):
    """Inside an attempt the source sends older versions (records and deletes) after newer ones; an attempt killed or
    failed half-way is resumed by one that starts its own comparison afresh."""
    sim = simulator(6, streams=[StreamHistory("accounts", None, "dedup")], records_per_job=(60, 120))
    assert sim.run_job(["incremental"], [SUCCEEDS])
    assert sim.run_job(["incremental"], [KILLED_MIDWAY, FAILS_MIDWAY, SUCCEEDS])
    assert sim.events["stale dedup records sent"] and sim.events["stale dedup deletes sent"]


def test_a_zygote_child_behaves_like_python_main_py(zygote, local_kvdb, make_bucket, tmp_path):
    streams = catalog(configured_stream("users", generation_id=1, minimum_generation_id=1, sync_id=7))
    messages = [record("users", {"id": i}) for i in range(5)] + [stream_state("users", 1, id=1), stream_status("users")]
    direct_bucket, forked_bucket = make_bucket(local_kvdb), make_bucket(local_kvdb)
    (tmp_path / "direct").mkdir()

    direct = run_write(tmp_path / "direct", config_for(direct_bucket), streams, messages + [b"not json"])
    config, catalog_path = tmp_path / "config.json", tmp_path / "catalog.json"
    write_json(config, config_for(forked_bucket))
    write_json(catalog_path, streams)
    args = ["write", "--config", str(config), "--catalog", str(catalog_path)]
    forked = run_attempt(zygote, args, [Line(compact(message)) for message in messages] + [Line(b"not json")], None)
    captured_output.append(forked.stdout.decode() + forked.stderr.decode())

    assert (forked.exit_code, direct.exit_code) == (1, 1)
    forked_run = Run(forked.exit_code, forked.stdout.decode(), "", parse_output(forked.stdout.decode()))
    assert forked_run.states == direct.states
    assert [(e["failure_type"], e["message"]) for e in forked_run.errors] == [(e["failure_type"], e["message"]) for e in direct.errors]
    assert [value for _, value in stored(forked_bucket)] == [value for _, value in stored(direct_bucket)] == [{"id": i} for i in range(5)]

    killed = run_attempt(zygote, args, [Line(compact(messages[0]))], kill_after=1)
    assert killed.killed


def test_overwrite_dedup_while_listings_lag_keeps_every_attempts_records(simulator):
    """Lagging listings: append_dedup with minimum generation == generation (the platform's overwrite + dedup) and
    listings 0.3 s behind the writes, over attempts that fail, get killed and resume."""
    streams = [StreamHistory("accounts", "crm", "dedup"), StreamHistory("users", None, "append")]
    sim = simulator(5, streams=streams, records_per_job=(40, 120), read_lag_seconds=0.3)
    assert sim.run_job(["truncate", "truncate"], [SUCCEEDS])
    assert sim.run_job(["truncate", "truncate"], [FAILS_MIDWAY, SUCCEEDS])
    assert sim.run_job(["truncate", "truncate"], [KILLED_MIDWAY, FAILS_MIDWAY, SUCCEEDS])
    assert sim.events["truncations completed under lag"] == 6
