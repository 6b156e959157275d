"""The CDK's in-process interface (`Destination.write` with AirbyteMessage objects) uses the same writer."""

from airbyte_cdk.models import AirbyteMessageSerializer, ConfiguredAirbyteCatalogSerializer, Type

from destination_kvdb import DestinationKvdb
from integration_tests.support.kvdb import config_for
from integration_tests.support.messages import catalog, configured_stream, record, stream_state


def test_write_yields_each_state_after_its_records_are_stored(kvdb_bucket):
    server, bucket_id = kvdb_bucket.server, kvdb_bucket.bucket_id
    messages = [
        *(record("users", {"id": n}) for n in range(3)),
        stream_state("users", 3),
        *(record("users", {"id": n}) for n in range(3, 5)),
        stream_state("users", 5),
    ]
    stored_when_yielded = []

    output = DestinationKvdb().write(
        config=config_for(kvdb_bucket),
        configured_catalog=ConfiguredAirbyteCatalogSerializer.load(catalog(configured_stream("users"))),
        input_messages=(AirbyteMessageSerializer.load(message) for message in messages),
    )
    for message in output:
        stored_when_yielded.append(len(server.items(bucket_id, "users__ab__")))
        assert message.type == Type.STATE

    # The writer runs ahead on its own thread, so later records may be stored too; never fewer.
    assert len(stored_when_yielded) == 2
    assert stored_when_yielded[0] >= 3 and stored_when_yielded[1] == 5
    assert [value["id"] for _, value in server.items(bucket_id, "users__ab__")] == [0, 1, 2, 3, 4]
