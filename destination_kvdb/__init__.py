"""Airbyte destination connector for KvDB (kvdb.io)."""

__all__ = ["DestinationKvdb"]


def __getattr__(name: str):
    """DestinationKvdb imported on first use: `destination-kvdb` installs its signal handlers before the CDK loads."""
    if name == "DestinationKvdb":
        from destination_kvdb.destination import DestinationKvdb

        return DestinationKvdb
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
