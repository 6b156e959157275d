"""What the connector prints on stdout besides logs: protocol lines, and the one ERROR trace a failed run ends with.

An expected error (an AirbyteTracedException the connector raised: bad config, bad input, KvDB refusing)
is the user's to fix, so it is logged as its message alone, and its trace carries no stack trace; any
other exception is a bug, logged and traced with its traceback.
"""

from __future__ import annotations

import logging
import sys
import threading

import orjson
from airbyte_cdk.logger import PRINT_BUFFER
from airbyte_cdk.models import AirbyteMessageSerializer, FailureType
from airbyte_cdk.utils.airbyte_secrets_utils import filter_secrets
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

logger = logging.getLogger("airbyte")

# Taken by the first thread that ends the run and never released: exactly one final trace is printed.
_ENDING = threading.Lock()


def print_line(line: bytes) -> None:
    """Print one protocol message and flush, after any log lines the CDK still buffers."""
    with PRINT_BUFFER.lock:
        PRINT_BUFFER.flush()
        sys.__stdout__.buffer.write(line + b"\n")
        sys.__stdout__.buffer.flush()


def claim_the_end() -> None:
    """Return in the first thread that ends the run; block any later one for good (the first exits the process)."""
    _ENDING.acquire()


def report(error: BaseException) -> None:
    """Log the error and print its ERROR trace: the message alone for our own errors, a traceback for bugs."""
    if isinstance(error, AirbyteTracedException):
        logger.error(error.message)
        traced = error
    else:
        logger.fatal(f"Unexpected error ({type(error).__name__})", exc_info=error)
        traced = AirbyteTracedException.from_exception(
            error, message=f"Unexpected error ({type(error).__name__})", failure_type=FailureType.system_error
        )
    message = traced.as_airbyte_message()
    if traced is error:
        message.trace.error.stack_trace = None
    if message.trace.error.internal_message == message.trace.error.message:  # one sentence, said once
        message.trace.error.internal_message = None
    print_line(filter_secrets(orjson.dumps(AirbyteMessageSerializer.dump(message)).decode()).encode())
