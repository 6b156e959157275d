"""What the tests share, once: imported by unit_tests and integration_tests alike (never one test module from another).

- messages: protocol message and catalog builders, JSON lines in and out, canonical JSON, echoed cursors;
- kvdb: buckets on the local KvDB server, registered secrets, what a bucket holds, the connector config for a bucket;
- connector: the connector as a real process (ConnectorProcess, run_write, run_check) and in this process;
- zygote: the pre-imported parent those processes are forked from;
- waiting: free loopback ports and waiting for a condition with a deadline;
- clock: the fake clock for retry, quota and backoff code.

The pytest fixtures built on these live in the two conftest.py files.
"""
