"""airbyte-cdk's standard connector tests, driven by acceptance-test-config.yml.

Offline run: `python -m pytest unit_tests/test_standard_suite.py -m "not image_tests"`.
The image tests need a `docker` command and a built image: `bash scripts/image.sh` runs them
through podman against the image it builds. Scenarios whose config lives under secrets/ are
skipped when that file is missing (they are also marked `requires_creds` by the CDK).
"""

from pathlib import Path

import pytest
from airbyte_cdk.test.standard_tests import DestinationTestSuiteBase

from destination_kvdb import DestinationKvdb

pytest_plugins = ["airbyte_cdk.test.standard_tests.pytest_hooks"]


class TestStandard(DestinationTestSuiteBase):
    connector = DestinationKvdb

    @pytest.fixture(autouse=True)
    def _backoff_on_the_fake_clock(self, clock) -> None:
        """The invalid config's check retries an unreachable server for its whole budget: on the fake clock
        (unit_tests/conftest.py) that costs no real time."""

    @pytest.fixture(autouse=True)
    def _skip_scenarios_without_their_secrets(self, request: pytest.FixtureRequest) -> None:
        callspec = getattr(request.node, "callspec", None)
        scenario = callspec.params.get("scenario") if callspec else None
        if scenario is None or not scenario.requires_creds:
            return
        config_path = Path(scenario.config_path)
        if not config_path.is_absolute():
            config_path = self.get_connector_root_dir() / config_path
        if not config_path.is_file():
            pytest.skip(f"{scenario.config_path} is absent: this scenario needs a real KvDB bucket")
