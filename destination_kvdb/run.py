"""Console-script entry point (`destination-kvdb`), named like the connector as Airbyte's image expects.

SIGTERM (a cancel) and SIGINT (Ctrl-C) are handled from the first moment: importing the CDK takes about a second,
and a signal in it must end the run like any other stop, not kill it silently or print a KeyboardInterrupt
traceback. So the handlers go in before anything heavy is imported, with the standard library only. Until
write's own handling (stopping.py) replaces them, a signal raises Stopped, which unwinds what runs (check still
removes its probe key) and ends the run with one ERROR trace, nothing stored or deleted.
"""

import json
import signal
import sys
import time

EXIT_CODES = {signal.SIGTERM: 143, signal.SIGINT: 130}


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
    try:
        from destination_kvdb.destination import DestinationKvdb

        DestinationKvdb().run(sys.argv[1:])
    except Stopped as stopped:
        for number in EXIT_CODES:  # one ending: a second signal now changes nothing
            signal.signal(number, signal.SIG_IGN)
        message = f"stopped by {stopped.signal.name} before any input was read: nothing was stored or deleted"
        error = {"message": message, "internal_message": message, "failure_type": "transient_error"}
        trace = {"type": "ERROR", "emitted_at": time.time() * 1000, "error": error}
        sys.__stdout__.write(json.dumps({"type": "TRACE", "trace": trace}) + "\n")
        sys.__stdout__.flush()
        sys.exit(EXIT_CODES[stopped.signal])
