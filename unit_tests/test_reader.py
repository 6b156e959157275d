"""The reader's lines: whatever the chunking, each line comes out whole and unchanged, in order."""

import os

import pytest

from destination_kvdb.reader import CHUNK_BYTES, LineBlocks, fd_chunks


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


def test_chunks_of_a_file_descriptor_are_its_bytes(tmp_path):
    data = b"line\n" * 100_000
    path = tmp_path / "input"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = list(fd_chunks(fd))
    finally:
        os.close(fd)
    assert b"".join(chunks) == data
    assert len(chunks) > 1  # read in pieces: the input is larger than one chunk
