"""The command line (`destination-kvdb`, or `python main.py` from a checkout), named like the connector as Airbyte's
image expects: a usage or the version without loading the CDK, else the command.

SIGTERM (a cancel) and SIGINT (Ctrl-C) are handled from the first moment: importing the CDK takes about a second,
and a signal in it must end the run like any other stop, not kill it silently or print a KeyboardInterrupt
traceback. So the handlers go in before anything heavy is imported, with the standard library only. Until
write's own handling (stopping.py) replaces them, a signal raises Stopped, which unwinds what runs (check still
tries to remove its probe key) and ends the run with one ERROR trace, nothing stored or deleted.
"""

import importlib.metadata
import json
import os
import signal
import sys
import time

EXIT_CODES = {signal.SIGTERM: 143, signal.SIGINT: 130}
COMMANDS = ("spec", "check", "write")
USAGE = """usage: {prog} spec
       {prog} check --config CONFIG
       {prog} write --config CONFIG --catalog CATALOG < MESSAGES
       {prog} --version

  spec    print the connector's specification: its config fields, as JSON
  check   test CONFIG (a JSON file) against KvDB: write, list and delete a probe key under key_prefix
  write   store the Airbyte messages read from stdin (JSON lines) in KvDB, the streams as CATALOG
          (a configured catalog, JSON) says, and echo each state once its records are stored
"""


class Stopped(BaseException):
    """A signal before write began reading input (BaseException: no `except Exception` may swallow it)."""

    def __init__(self, number: int):
        super().__init__(number)
        self.signal = signal.Signals(number)


def _raise_stopped(number: int, _frame: object) -> None:
    raise Stopped(number)


def run() -> None:
    for number in EXIT_CODES:
        signal.signal(number, _raise_stopped)
    args = sys.argv[1:]
    try:
        if not args or args[0] not in COMMANDS:
            _without_a_command(args)
        from destination_kvdb.destination import DestinationKvdb

        DestinationKvdb().run(args)
    except Stopped as stopped:
        _report_stop(stopped.signal)


def _without_a_command(args: list[str]) -> None:
    """--help and --version answer on stdout; no or an unknown command gets the usage on stderr, exit 2."""
    prog = "python main.py" if os.path.basename(sys.argv[0]) == "main.py" else "destination-kvdb"
    if args and args[0] in ("-h", "--help"):
        sys.stdout.write(USAGE.format(prog=prog))
    elif args and args[0] == "--version":
        try:
            sys.stdout.write(f"destination-kvdb {importlib.metadata.version('destination-kvdb')}\n")
        except importlib.metadata.PackageNotFoundError:
            sys.stdout.write("destination-kvdb (not installed: run from a checkout)\n")
    else:
        sys.stderr.write(("no command given" if not args else f"unknown command {args[0][:40]!r}") + "\n" + USAGE.format(prog=prog))
        sys.exit(2)
    sys.exit(0)


def _report_stop(received: signal.Signals) -> None:
    """The stop's one ERROR trace, written without the CDK (it may not be loaded), then the signal's exit code."""
    for number in EXIT_CODES:  # one ending: a second signal now changes nothing
        signal.signal(number, signal.SIG_IGN)
    message = f"stopped by {received.name} before any input was read: nothing was stored or deleted"
    error = {"message": message, "failure_type": "transient_error"}
    trace = {"type": "ERROR", "emitted_at": time.time() * 1000, "error": error}
    sys.__stdout__.write(json.dumps({"type": "TRACE", "trace": trace}) + "\n")
    sys.__stdout__.flush()
    sys.exit(EXIT_CODES[received])
