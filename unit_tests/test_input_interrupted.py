"""A signal ends the reading of input: LineBlocks raises InputInterrupted, never the clean end (None) that finalizes."""

import threading

import pytest

from destination_kvdb.reader import InputInterrupted, LineBlocks


def test_a_stop_is_no_clean_end_even_when_the_end_of_input_already_arrived():
    """Ctrl-C in a shell ends `cat` too, so the end of input may be queued before the signal is handled."""
    blocks = LineBlocks(iter([b'{"type":"LOG"}\n']))
    blocks.stop_reading()

    with pytest.raises(InputInterrupted):
        blocks.next_block(None)


def test_wake_ends_a_wait_for_input_that_would_never_end():
    source_idle = threading.Event()  # never set: the source keeps stdin open and sends nothing

    def chunks():
        yield b'{"type":"LOG"}\n'
        source_idle.wait()
        yield b""

    blocks = LineBlocks(chunks())
    assert blocks.next_block(None) == b'{"type":"LOG"}\n'
    stopper = threading.Thread(target=lambda: (blocks.stop_reading(), blocks.wake()))
    stopper.start()

    with pytest.raises(InputInterrupted):
        blocks.next_block(None)  # without the wake this waits forever
    stopper.join()
    source_idle.set()
