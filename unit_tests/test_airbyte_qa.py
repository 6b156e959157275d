"""Airbyte's connector QA checks that apply here pass on this checkout, and each one catches what it is for.

A change that would fail Airbyte's CI (connectors_qa, the metadata validator) fails this suite: a breaking change
without its migration guide section, a version not bumped everywhere or missing from the changelog, an unknown
metadata field, plain http outside tests. The mutations below show each check can fail.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import pytest
import yaml

from integration_tests.support.airbyte_qa import CHECKS, REPOSITORY, Connector

RELEASE_FILES = ("metadata.yaml", "setup.py", "Dockerfile", "icon.svg", "docs/integrations/destinations")


@pytest.mark.parametrize("name", CHECKS)
def test_the_checkout_passes_airbytes_check(name):
    assert CHECKS[name](Connector()) == []


@pytest.fixture
def checkout(tmp_path) -> Path:
    """The files Airbyte's checks read, copied, to break one at a time."""
    for name in RELEASE_FILES:
        source, target = REPOSITORY / name, tmp_path / name
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy(source, target)
    return tmp_path


def edit_metadata(root: Path, change: Callable[[dict], None]) -> None:
    metadata = yaml.safe_load((root / "metadata.yaml").read_text())
    change(metadata["data"])
    (root / "metadata.yaml").write_text(yaml.safe_dump(metadata, sort_keys=False))


def edit(root: Path, name: str, old: str, new: str) -> None:
    text = (root / name).read_text()
    assert old in text, (name, old)
    (root / name).write_text(text.replace(old, new))


def breaking_change(version: str, deadline: str = "2027-01-31", **fields) -> Callable[[dict], None]:
    def add(data: dict) -> None:
        data.setdefault("releases", {}).setdefault("breakingChanges", {})[version] = {"upgradeDeadline": deadline, "message": "keys moved", **fields}

    return add


def current_version() -> str:
    return Connector().version


def release_date() -> str:
    return Connector().changelog()[0].date


def test_a_breaking_change_of_this_release_with_its_guide_section_passes_every_check(checkout):
    version = current_version()
    anchor = f"https://docs.airbyte.com/integrations/destinations/kvdb-migrations#upgrading-to-{version.replace('.', '')}"
    edit_metadata(checkout, breaking_change(version, migrationDocumentationUrl=anchor))

    problems = {name: check(Connector(checkout)) for name, check in CHECKS.items() if name != "https_only"}  # no code copied
    assert {name: found for name, found in problems.items() if found} == {}


GUIDE = "docs/integrations/destinations/kvdb-migrations.md"
MUTATIONS: dict[str, tuple[str, Callable[[Path], None]]] = {
    "breaking change without its guide section": ("migration_guide", lambda root: (
        edit_metadata(root, breaking_change(current_version())), edit(root, GUIDE, f"## Upgrading to {current_version()}", "## Upgrading"))),
    "guide without Airbyte's title": ("migration_guide", lambda root: (
        edit_metadata(root, breaking_change(current_version())), edit(root, GUIDE, "# KvDB Migration Guide", "# KVDB migrations"))),
    "guide missing": ("migration_guide", lambda root: (edit_metadata(root, breaking_change(current_version())), (root / GUIDE).unlink())),
    "breaking change at a version Airbyte never published": ("breaking_changes_have_images", lambda root: edit_metadata(root, breaking_change("0.3.0"))),
    "deadline less than a week after the release": ("breaking_change_deadline", lambda root: edit_metadata(root, breaking_change(current_version(), release_date()))),
    "migration link to another page": ("breaking_change_deadline", lambda root: edit_metadata(
        root, breaking_change(current_version(), migrationDocumentationUrl="https://docs.airbyte.com/integrations/destinations/kvdb"))),
    "docs page missing": ("documentation", lambda root: (root / "docs/integrations/destinations/kvdb.md").unlink()),
    "no changelog row for the version": ("changelog_entry", lambda root: edit_metadata(root, lambda data: data.update(dockerImageTag="9.9.9"))),
    "an older version above a newer": ("changelog_entry", lambda root: edit(
        root, "docs/integrations/destinations/kvdb.md", "| 0.1.11  | 2024-08-22 |", "| 0.1.13  | 2024-08-22 |")),
    "setup.py not bumped": ("versions_agree", lambda root: edit(root, "setup.py", f'version="{current_version()}"', 'version="0.5.0"')),
    "image label not bumped": ("versions_agree", lambda root: edit(root, "Dockerfile", f"io.airbyte.version={current_version()}", "io.airbyte.version=0.5.0")),
    "required field missing": ("metadata_file", lambda root: edit_metadata(root, lambda data: data.pop("githubIssueLabel"))),
    "misspelt field": ("metadata_file", lambda root: edit_metadata(root, lambda data: data.update(supportsRefresh=True))),
    "breaking change without a deadline": ("metadata_file", lambda root: edit_metadata(root, lambda data: data.update(
        releases={"breakingChanges": {current_version(): {"message": "keys moved"}}}))),
    "base image not pinned": ("metadata_file", lambda root: edit_metadata(root, lambda data: data.update(
        connectorBuildOptions={"baseImage": "docker.io/airbyte/python-connector-base:4.0.2"}))),
    "no CDK tag": ("tags_and_license", lambda root: edit_metadata(root, lambda data: data.update(tags=["language:python"]))),
    "license not allowed": ("tags_and_license", lambda root: edit_metadata(root, lambda data: data.update(license="GPL-3.0"))),
    "icon missing": ("icon", lambda root: (root / "icon.svg").unlink()),
    "a sync mode not in the table": ("sync_modes_table", lambda root: edit(
        root, "docs/integrations/destinations/kvdb.md", "| Full Refresh - Overwrite + Deduped ", "| Overwrite, deduplicated ")),
}


@pytest.mark.parametrize("check, mutate", MUTATIONS.values(), ids=MUTATIONS.keys())
def test_each_check_fails_on_what_it_is_for(checkout, check, mutate):
    assert CHECKS[check](Connector(checkout)) == []

    mutate(checkout)

    assert CHECKS[check](Connector(checkout)) != []


HTTP_LINES = {
    "plain http to a host": ("x.py", 'BASE = "http://kvdb.io"\n', ["destination_kvdb/x.py has an http:// URL"]),
    "loopback address in JSON": ("x.json", '{"base_url": "http://127.0.0.1:8080"}\n', ["destination_kvdb/x.json has an http:// URL"]),
    "marked with the reason": ("x.py", 'BASE = "http://kvdb.io"  # ignore-https-check: a test server\n', []),
    "a comment": ("x.py", "# http://kvdb.io redirects\n", []),
    "localhost": ("x.json", '{"base_url": "http://localhost:8080"}\n', []),
}


@pytest.mark.parametrize("name, line, expected", HTTP_LINES.values(), ids=HTTP_LINES.keys())
def test_https_only_flags_plain_http_outside_tests_as_airbyte_does(tmp_path, name, line, expected):
    (tmp_path / "destination_kvdb").mkdir()
    (tmp_path / "destination_kvdb" / name).write_text(line)
    for ignored in ("unit_tests", ".venv-faker", "build"):
        (tmp_path / ignored).mkdir()
        (tmp_path / ignored / "y.py").write_text('URL = "http://kvdb.io"\n')

    assert CHECKS["https_only"](Connector(tmp_path)) == expected
