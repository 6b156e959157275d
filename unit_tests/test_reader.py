"""The reader's lines: whatever the chunking, each line comes out whole and unchanged, in order; stdin read without a thread."""

import os
import threading

import pytest

from destination_kvdb.reader import CHUNK_BYTES, InputInterrupted, LineBlocks


def all_lines(chunks: list[bytes]) -> list[bytes]:
    blocks = LineBlocks(iter(chunks))
    taken: list[bytes] = []
    while (block := blocks.next_block(timeout=None)) is not None:
        taken.append(block)
    assert all(block.endswith(b"\n") for block in taken[:-1]), "a block ended inside a line"
    assert b"".join(taken) == b"".join(chunks), "the blocks are not the input byte for byte"
    return b"".join(taken).splitlines()


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[at : at + size] for at in range(0, len(data), size)]


@pytest.mark.parametrize("chunk_size", [1, 7, 4096, CHUNK_BYTES])
def test_long_lines_split_across_many_chunks_come_out_whole(chunk_size):
    long_line = b'{"type":"RECORD","record":{"stream":"s","data":{"blob":"' + b"x" * 300_000 + b'"}}}'
    lines = [b"short 1", long_line, b"short 2", long_line + b"y", b"", b"last"]
    data = b"\n".join(lines) + b"\n"
    if chunk_size == 1:
        data = data[:2_000] + b"\n"  # byte by byte: a shorter input keeps the test quick
        lines = data.splitlines()

    assert all_lines(chunked(data, chunk_size)) == lines


def test_a_last_line_without_newline_is_kept():
    assert all_lines([b"a\nb", b"b" * 10, b"b"]) == [b"a", b"b" * 12]


def test_a_file_descriptors_lines_come_out_whole_read_on_the_callers_thread(tmp_path):
    lines = [b"line %d" % number for number in range(100_000)]  # more than one chunk
    path = tmp_path / "input"
    path.write_bytes(b"\n".join(lines) + b"\n")
    fd = os.open(path, os.O_RDONLY)
    try:
        before = set(threading.enumerate())
        blocks = LineBlocks(fd)
        taken: list[bytes] = []
        while (block := blocks.next_block(timeout=None)) is not None:
            taken.append(block)
        assert set(threading.enumerate()) - before == set()  # no reading thread competes with the writer for the GIL
    finally:
        os.close(fd)
    assert len(taken) > 1
    assert b"".join(taken).splitlines() == lines


def test_a_pipe_without_input_times_out_and_a_wake_ends_a_wait_that_would_never_end():
    read_end, write_end = os.pipe()  # the source keeps stdin open and sends one line, then nothing
    os.write(write_end, b'{"type":"LOG"}\n')
    blocks = LineBlocks(read_end)
    assert blocks.next_block(timeout=None) == b'{"type":"LOG"}\n'
    assert blocks.next_block(timeout=0) == b""  # no line: the writer may send a state that is due
    blocks.wake()  # as the stop's watcher does, from its thread, once a signal stopped the reading

    assert blocks.next_block(timeout=None) == b""  # without the wake this waits forever
    blocks.stop_reading()
    with pytest.raises(InputInterrupted):
        blocks.next_block(timeout=None)
    os.close(write_end)
    os.close(read_end)
