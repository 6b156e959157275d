"""Console-script entry point (`destination-kvdb`), named like the connector as Airbyte's image expects."""

import sys

from destination_kvdb.destination import DestinationKvdb


def run() -> None:
    DestinationKvdb().run(sys.argv[1:])
