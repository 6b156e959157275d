"""CPU floor for the benchmark: the least any Python destination must do per message, parse and re-serialize.

Run with the messages on stdin; it writes nothing, so its CPU per record is the cost no connector can avoid.
"""

import sys

import orjson


def main() -> None:
    for line in sys.stdin.buffer:
        orjson.dumps(orjson.loads(line))


if __name__ == "__main__":
    main()
