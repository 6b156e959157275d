"""PyAirbyte drives source-faker into our connector (merge writes, twice), as a PyAirbyte user would.

Opt-in (`-m pyairbyte`): needs `scripts/setup_e2e_envs.sh all` (the faker venv, and the ~800 MB PyAirbyte
venv with this repo installed editable, whose `destination-kvdb` console script PyAirbyte runs as a
local executable). PyAirbyte runs in its own venv, in a subprocess, offline (AIRBYTE_OFFLINE_MODE=1:
no registry look-ups, no telemetry), with every cache/temp/log directory under tmp_path. The local KvDB
server runs in this pytest process and is checked directly between the syncs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from integration_tests.support.connector import RUN_TIMEOUT_SECONDS, captured_output, write_json
from integration_tests.support.e2e import (
    FAKER_STREAMS,
    assert_clean_run,
    configured_catalog,
    discover_streams,
    faker_bin,
    faker_config,
    pk_key,
    pyairbyte_python,
    run_pipeline,
    source_env,
    stored_by_stream,
)
from integration_tests.support.kvdb import LocalBucket, config_for

pytestmark = pytest.mark.pyairbyte

SYNC_SCRIPT = r'''
import json
import sys
from pathlib import Path

import airbyte as ab
from airbyte.caches import DuckDBCache

args = json.loads(Path(sys.argv[1]).read_text())
source = ab.get_source("source-faker", config=args["source_config"], local_executable=args["faker"], streams="*")
destination = ab.get_destination(
    "destination-kvdb", config=args["destination_config"], local_executable=args["destination"]
)
if args["cache_dir"]:
    cache_dir = Path(args["cache_dir"])
    cache = DuckDBCache(db_path=str(cache_dir / "cache.duckdb"), cache_dir=str(cache_dir / "files"))
    # The destination's states go to a second DuckDB file: with one file, PyAirbyte 0.71.3 rewrites
    # _airbyte_destination_state (delete + insert of the same key) while its streaming read of the
    # cached records is still open, and DuckDB then rejects the insert of a sync's second run with
    # "Duplicate key ... violates primary key constraint" (seen here; not caused by the destination).
    state_cache = DuckDBCache(db_path=str(cache_dir / "state.duckdb"), cache_dir=str(cache_dir / "state_files"))
    options = {"cache": cache, "state_cache": state_cache}
elif args["state_cache_dir"]:
    # No record cache: the source's messages go straight to the destination, but states are kept, so
    # the second sync is incremental (faker resumes after the ids it already sent).
    state_dir = Path(args["state_cache_dir"])
    state_cache = DuckDBCache(db_path=str(state_dir / "state.duckdb"), cache_dir=str(state_dir / "files"))
    options = {"cache": False, "state_cache": state_cache}
else:
    options = {"cache": False, "state_cache": False}
result = destination.write(source, streams="*", write_strategy="merge", **options)
Path(args["result_path"]).write_text(json.dumps({"processed_records": result.processed_records}))
'''


def pyairbyte_env(tmp_path) -> dict[str, str]:
    dirs = {
        "AIRBYTE_PROJECT_DIR": tmp_path / "pyairbyte",
        "AIRBYTE_INSTALL_DIR": tmp_path / "pyairbyte" / "install",
        "AIRBYTE_CACHE_ROOT": tmp_path / "pyairbyte" / "cache_root",
        "AIRBYTE_TEMP_DIR": tmp_path / "pyairbyte" / "tmp",
        "AIRBYTE_LOGGING_ROOT": tmp_path / "pyairbyte" / "logs",
    }
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    return {
        **source_env(),
        **{name: str(path) for name, path in dirs.items()},
        "AIRBYTE_OFFLINE_MODE": "1",
        "DO_NOT_TRACK": "1",
        "PYTHONWARNINGS": "ignore::FutureWarning",
    }


def expected_ids(tmp_path, faker, reference_bucket: LocalBucket) -> dict[str, set]:
    """The ids faker emits for this config, from a plain `read` piped into a throwaway bucket."""
    streams = discover_streams(faker, write_json(tmp_path / "discover_config.json", faker_config()))
    assert sorted(stream["name"] for stream in streams) == sorted(FAKER_STREAMS)
    config = config_for(reference_bucket)
    pipeline = run_pipeline(tmp_path, faker, faker_config(), configured_catalog(streams, "append"), config, "reference")
    assert_clean_run(pipeline)
    ids: dict[str, set] = defaultdict(set)
    for stream, records in pipeline.source_records().items():
        ids[stream].update(record["id"] for record in records)
    assert sorted(ids) == sorted(FAKER_STREAMS) and all(ids.values())
    return ids


# PyAirbyte sends generation_id = minimum_generation_id = 1 on every write (airbyte/shared/catalog_providers.py),
# so each merge is a "truncate refresh" of generation 1; data of generation 1 from the first sync must survive.


@pytest.mark.parametrize(
    "cache",
    ["duckdb", "no_cache", "state_only"],
)
def test_pyairbyte_merge_twice_stores_each_id_once(tmp_path, kvdb_bucket, local_kvdb_factory, make_bucket, cache):
    python = pyairbyte_python()
    faker = faker_bin()
    # DESTINATION_KVDB_BIN: run another build of the connector (the venv's console script runs this checkout).
    destination = Path(os.environ.get("DESTINATION_KVDB_BIN") or python.parent / "destination-kvdb")
    assert destination.is_file(), f"{destination} missing: rerun scripts/setup_e2e_envs.sh pyairbyte"
    ids = expected_ids(tmp_path, faker, make_bucket(local_kvdb_factory()))  # a second server: the tested bucket stays untouched

    script = tmp_path / "sync.py"
    script.write_text(SYNC_SCRIPT)
    env = pyairbyte_env(tmp_path)
    for attempt in (1, 2):
        result_path = tmp_path / f"result{attempt}.json"
        args = {
            "faker": str(faker),
            "destination": str(destination),
            "source_config": faker_config(always_updated=cache != "state_only"),
            "destination_config": config_for(kvdb_bucket),
            "cache_dir": str(tmp_path / "duckdb") if cache == "duckdb" else None,
            "state_cache_dir": str(tmp_path / "state") if cache == "state_only" else None,
            "result_path": str(result_path),
        }
        completed = subprocess.run(
            [str(python), str(script), write_json(tmp_path / f"args{attempt}.json", args)],
            capture_output=True,
            timeout=RUN_TIMEOUT_SECONDS,
            env=env,
            cwd=tmp_path,
        )
        stdout, stderr = completed.stdout.decode(errors="replace"), completed.stderr.decode(errors="replace")
        captured_output.extend([stdout, stderr])
        if completed.returncode != 0:
            pytest.fail(f"sync {attempt} failed (exit {completed.returncode}):\n{stdout[-3000:]}\n{stderr[-6000:]}", pytrace=False)
        assert completed.returncode == 0, f"sync {attempt} failed:\n{stdout[-3000:]}\n{stderr[-5000:]}"
        processed = json.loads(result_path.read_text())["processed_records"]
        if attempt == 1 or cache != "state_only":
            assert processed > 0, f"sync {attempt} wrote nothing"
        else:
            assert processed == 0, "faker should have had nothing new for the incremental second sync"
        print(f"sync {attempt} ({cache}): PyAirbyte processed_records={processed}", file=sys.stderr)

        stored = stored_by_stream(kvdb_bucket.server, kvdb_bucket.bucket_id)
        assert {stream: len(items) for stream, items in stored.items()} == {stream: len(ids[stream]) for stream in FAKER_STREAMS}
        for stream in FAKER_STREAMS:
            assert sorted(key for key, _ in stored[stream]) == sorted(pk_key(stream, record_id) for record_id in ids[stream])
            assert all(key == pk_key(stream, value["id"]) for key, value in stored[stream]), stream
