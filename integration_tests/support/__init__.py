"""What the tests share, once: imported by unit_tests and integration_tests alike (never one test module from another).

- messages: protocol message and catalog builders, JSON lines in and out, canonical JSON, echoed cursors;
- kvdb: buckets on the local KvDB server, registered secrets, what a bucket holds, the connector config for a bucket;
- connector: the connector as a real process (ConnectorProcess, run_write, run_check) and what a run printed;
- zygote: the pre-imported parent those processes are forked from;
- waiting: free loopback ports and waiting for a condition with a deadline;
- clock: the fake clock for retry, quota and backoff code;
- fake_kvdb: a fake KvDB behind requests' transport, and check() run in this process, for the unit tests;
- e2e: the real source-faker piped into the connector; platform_sim: the connector driven as the platform drives it.

The pytest fixtures built on these live in the two conftest.py files.
"""
