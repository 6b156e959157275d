"""Airbyte destination connector for KvDB (kvdb.io)."""

from destination_kvdb.destination import DestinationKvdb

__all__ = ["DestinationKvdb"]
