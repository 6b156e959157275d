"""What the tests share, once: imported by unit_tests and integration_tests alike (never one test module from another).

- messages: protocol message and catalog builders, JSON lines in and out, canonical JSON, echoed cursors;
- kvdb: buckets on the local KvDB server, registered secrets, what a bucket holds, the connector config for a bucket;
- connector: the connector as a real process (ConnectorProcess, run_write, run_check) and what a run printed;
- zygote: the pre-imported parent those processes are forked from;
- waiting: free loopback ports and waiting for a condition with a deadline;
- e2e: the real source-faker piped into the connector; platform_sim: the connector driven as the platform drives it.

The pytest fixtures built on these live in the two conftest.py files. The unit tests' fakes live with the unit tests
(unit_tests/: fake_store, fake_kvdb, fake_clock); the local server's own tests run it in process on fake_clock's time.
"""
