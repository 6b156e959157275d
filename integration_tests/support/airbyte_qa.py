"""Airbyte's connector QA checks (airbyte-ci/connectors/connectors_qa and the metadata validator run before upload)
that apply to this Python destination, run offline on a checkout: each returns the problems it finds, [] to pass.

Left out: the checks for sources only or for support level 300, and the two that contradict the project's layout,
Poetry (pyproject.toml instead of setup.py) and no Dockerfile for a Python connector (docs/architecture.md says
why). Checks that ask DockerHub or GitHub are replaced by what a checkout can tell: the base image pinned by digest,
breaking changes only at versions that have an image, the version above every earlier one in the changelog.
"""

from __future__ import annotations

import datetime
import os
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterator

import jsonschema
import yaml

from integration_tests.support.airbyte_metadata_schema import METADATA_SCHEMA

REPOSITORY = Path(__file__).resolve().parents[2]
# Versions Airbyte's registry (and DockerHub's airbyte/destination-kvdb) holds; add one once Airbyte publishes it.
PUBLISHED_IN_AIRBYTE_REGISTRY = frozenset(f"0.1.{patch}" for patch in range(13))
SEMVER = re.compile(r"^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")
BASE_IMAGE = re.compile(r"^docker\.io/airbyte/python-connector-base:[^:@]+@sha256:[0-9a-f]{64}$")
# connectors_qa's CheckConnectorUsesHTTPSOnly, as Airbyte has it, plus what a checkout holds besides the code.
HTTPS_IGNORED_DIRECTORIES = {".venv", "tests", "unit_tests", "integration_tests", "build", "source-file", ".pytest_cache",
                             "acceptance_tests_logs", ".hypothesis", ".ruff_cache", ".git", "secrets", "__pycache__"}
HTTPS_IGNORED_FILES = ("*Test.java", "*.jar", "*.pyc", "*.gz", "*.svg", "expected_records.jsonl", "expected_records.json")
HTTPS_IGNORED_PREFIXES = ("http://json-schema.org", "http://localhost")
COMMENT_STARTS = {".py": "#", ".yml": "#", ".yaml": "#", ".java": "//", ".md": "<!--"}
DESTINATION_SYNC_MODES = ("Full Refresh - Overwrite", "Full Refresh - Append", "Full Refresh - Overwrite + Deduped",
                          "Incremental Sync - Append", "Incremental Sync - Append + Deduped")
CDK_TAGS = {"cdk:low-code", "cdk:python", "cdk:file"}
VALID_LICENSES = {"MIT", "ELV2", "AIRBYTE ENTERPRISE"}


@dataclass(frozen=True)
class ChangelogRow:
    version: str
    date: str


class Connector:
    """The files the checks read, as Airbyte's connector_ops finds them, from a checkout's root."""

    def __init__(self, root: Path = REPOSITORY):
        self.root = root

    @cached_property
    def metadata(self) -> dict[str, Any]:
        return yaml.safe_load((self.root / "metadata.yaml").read_text())

    @property
    def data(self) -> dict[str, Any]:
        return self.metadata["data"]

    @property
    def version(self) -> str:
        return str(self.data["dockerImageTag"])

    @property
    def breaking_changes(self) -> dict[str, Any]:
        return (self.data.get("releases") or {}).get("breakingChanges") or {}

    @property
    def docs_path(self) -> Path:
        """docs/integrations/destinations/kvdb.md, from documentationUrl as on docs.airbyte.com."""
        return self.root / "docs" / (self.data["documentationUrl"].split("docs.airbyte.com/", 1)[1] + ".md")

    @property
    def migration_guide_path(self) -> Path:
        return self.docs_path.with_name(self.docs_path.stem + "-migrations.md")

    def changelog(self) -> list[ChangelogRow]:
        """The changelog table's rows, top first."""
        text = self.docs_path.read_text().split("## Changelog", 1)[-1]
        rows = re.findall(r"^\|\s*(\d+\.\d+\.\d+\S*)\s*\|\s*(\d{4}-\d{2}-\d{2})\s*\|", text, re.MULTILINE)
        return [ChangelogRow(version, date) for version, date in rows]

    def setup_py_field(self, name: str) -> str:
        match = re.search(rf'^\s*{name}="([^"]*)"', (self.root / "setup.py").read_text(), re.MULTILINE)
        return match.group(1) if match else ""

    def dockerfile_value(self, pattern: str) -> str:
        match = re.search(pattern, (self.root / "Dockerfile").read_text(), re.MULTILINE)
        return match.group(1) if match else ""


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version.split("-")[0])[:3])


def migration_guide(connector: Connector) -> list[str]:
    """CheckMigrationGuide: breaking changes have a guide, titled by the name, a '## Upgrading to' per version."""
    if not connector.breaking_changes:
        return []
    path = connector.migration_guide_path
    if not path.exists():
        return [f"breakingChanges are declared but {path.relative_to(connector.root)} is missing"]
    lines = path.read_text().splitlines()
    expected_title = f"# {connector.data['name']} Migration Guide"
    if not lines or lines[0] != expected_title:
        return [f"the migration guide must start with {expected_title!r}"]
    # Airbyte sorts the versions as strings, newest first; the headings must follow that order exactly.
    expected = sorted(connector.breaking_changes, reverse=True)
    headings = [line.strip().replace("## Upgrading to ", "") for line in lines if line.strip().startswith("## Upgrading to ")]
    return [] if headings == expected else [f"the migration guide's '## Upgrading to' headings are {headings}, expected {expected}"]


def breaking_changes_have_images(connector: Connector) -> list[str]:
    """The post-upload validator wants an image of every version in breakingChanges: published, or this one."""
    allowed = PUBLISHED_IN_AIRBYTE_REGISTRY | {connector.version}
    return [f"breakingChanges names {version}, which Airbyte never published" for version in connector.breaking_changes if version not in allowed]


def breaking_change_deadline(connector: Connector) -> list[str]:
    """ValidateBreakingChangesDeadlines, with the release date (the changelog's) standing for Airbyte's 'today'."""
    entry = connector.breaking_changes.get(connector.version)
    if entry is None:
        return []
    released = next((row.date for row in connector.changelog() if row.version == connector.version), None)
    deadline = str(entry.get("upgradeDeadline", ""))
    if released is None or not deadline:
        return [f"the breaking change of {connector.version} needs an upgradeDeadline and a changelog date"]
    if datetime.date.fromisoformat(deadline) < datetime.date.fromisoformat(released) + datetime.timedelta(weeks=1):
        return [f"the upgradeDeadline of {connector.version} is less than a week after its release ({released})"]
    anchor = f"{connector.data['documentationUrl']}-migrations#upgrading-to-{connector.version.replace('.', '')}"
    url = entry.get("migrationDocumentationUrl", anchor)
    return [] if url == anchor else [f"migrationDocumentationUrl of {connector.version} must be {anchor}"]


def documentation(connector: Connector) -> list[str]:
    """CheckDocumentationExists, and the validator's docs path."""
    return [] if connector.docs_path.exists() else [f"{connector.docs_path.relative_to(connector.root)} is missing"]


def changelog_entry(connector: Connector) -> list[str]:
    """CheckChangelogEntry, and the entry on top: versions descend (a version's rows together), so each release went
    up from the one before."""
    rows = connector.changelog()
    if not rows or rows[0].version != connector.version:
        return [f"the changelog's first row must be {connector.version}"]
    versions = [_version_key(row.version) for row in rows]
    return [] if versions == sorted(versions, reverse=True) else ["the changelog's versions must descend"]


def versions_agree(connector: Connector) -> list[str]:
    """The version in metadata.yaml, setup.py and the image's label is one semver (Airbyte: pyproject.toml's)."""
    versions = {"metadata.yaml": connector.version, "setup.py": connector.setup_py_field("version"),
                "Dockerfile": connector.dockerfile_value(r"^LABEL io\.airbyte\.version=(\S+)")}
    problems = [] if SEMVER.match(connector.version) else [f"dockerImageTag {connector.version} is not semver"]
    if len(set(versions.values())) != 1:
        problems.append(f"the versions differ: {versions}")
    if max(_version_key(version) for version in PUBLISHED_IN_AIRBYTE_REGISTRY) >= _version_key(connector.version):
        problems.append(f"{connector.version} is not above the versions Airbyte published")
    return problems


def metadata_file(connector: Connector) -> list[str]:
    """ValidateMetadata: the schema (no unknown field), and the pre-upload validators that need no network."""
    validator = jsonschema.Draft7Validator(METADATA_SCHEMA, format_checker=jsonschema.FormatChecker())
    problems = [f"metadata.yaml {'/'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(_dates_as_text(connector.metadata))]
    tags = connector.data.get("tags", [])
    problems += [f"tag {tag!r} is not <key>:<value>" for tag in tags if ":" not in tag]
    version = connector.version
    if SEMVER.match(version) and re.match(r"^[1-9]\d*\.0\.0$", version) and version not in connector.breaking_changes:
        problems.append(f"the major version {version} needs a breakingChanges entry")
    if "-rc." in version and ((connector.data.get("releases") or {}).get("rolloutConfiguration") is None):
        problems.append("a release candidate needs releases.rolloutConfiguration")
    base_image = (connector.data.get("connectorBuildOptions") or {}).get("baseImage", "")
    if not BASE_IMAGE.match(base_image):
        problems.append("connectorBuildOptions.baseImage must be Airbyte's python-connector-base pinned by digest")
    if connector.dockerfile_value(r"^ARG BASE_IMAGE=(\S+)") != base_image:
        problems.append("the Dockerfile's BASE_IMAGE default must be connectorBuildOptions.baseImage")
    return problems


def _dates_as_text(value: Any) -> Any:
    """YAML reads unquoted dates as dates; Airbyte's model takes either, the JSON schema text."""
    if isinstance(value, dict):
        return {str(key): _dates_as_text(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_dates_as_text(item) for item in value]
    return value.isoformat() if isinstance(value, datetime.date) else value


def tags_and_license(connector: Connector) -> list[str]:
    """CheckConnectorLanguageTag, CheckConnectorCDKTag, CheckConnectorLicense (and setup.py's, for pyproject's)."""
    tags = connector.data.get("tags", [])
    problems = [] if [tag for tag in tags if tag.startswith("language:")] == ["language:python"] else ["one tag language:python"]
    if not CDK_TAGS & set(tags):
        problems.append(f"a CDK tag, one of {sorted(CDK_TAGS)}")
    license_ = str(connector.data.get("license", ""))
    if license_.upper() not in VALID_LICENSES or connector.setup_py_field("license") != license_:
        problems.append(f"license {license_!r} must be one of {sorted(VALID_LICENSES)}, the same in setup.py")
    return problems


def icon(connector: Connector) -> list[str]:
    """CheckConnectorIconIsAvailable: icon.svg at the root, named in metadata.yaml, square."""
    path = connector.root / "icon.svg"
    if connector.data.get("icon") != "icon.svg" or not path.exists():
        return ["icon.svg is missing at the root or not named in metadata.yaml"]
    size = re.search(r'<svg[^>]*\bwidth="(\d+)"[^>]*\bheight="(\d+)"', path.read_text())
    return [] if size and size.group(1) == size.group(2) else ["icon.svg must be square"]


def sync_modes_table(connector: Connector) -> list[str]:
    """The validator's 'Supported sync modes' table, required of a destination enabled in a registry."""
    text = connector.docs_path.read_text()
    if not re.search(r"^#{2,3}\s+Supported sync modes", text, re.IGNORECASE | re.MULTILINE) or not re.search(r"\|\s*Sync mode\s*\|", text, re.IGNORECASE):
        return ["the docs need a '## Supported sync modes' section with a '| Sync mode |' table"]
    return [f"the sync modes table lacks {mode!r}" for mode in DESTINATION_SYNC_MODES if mode.lower() not in text.lower()]


def https_only(connector: Connector) -> list[str]:
    """CheckConnectorUsesHTTPSOnly: no http:// outside tests, comments, localhost and lines marked ignore-https-check."""
    flagged = set()
    for path in _files(connector.root):
        try:
            lines = path.read_text().splitlines()
        except (UnicodeDecodeError, OSError):  # binary, or gone since the walk listed it
            continue
        for line in lines:
            line = line.lower()
            if line.lstrip().startswith(COMMENT_STARTS.get(path.suffix, "\0")) or "# ignore-https-check" in line:
                continue
            for prefix in HTTPS_IGNORED_PREFIXES:
                line = line.replace(prefix, "")
            if "http://" in line:
                flagged.add(str(path.relative_to(connector.root)))
    return [f"{name} has an http:// URL" for name in sorted(flagged)]


def _files(root: Path) -> Iterator[Path]:
    for directory, subdirectories, names in os.walk(root):
        subdirectories[:] = [name for name in subdirectories if not _ignored_directory(name)]
        for name in names:
            path = Path(directory) / name
            if not any(path.match(pattern) for pattern in HTTPS_IGNORED_FILES):
                yield path


def _ignored_directory(name: str) -> bool:
    return name in HTTPS_IGNORED_DIRECTORIES or name.startswith(".venv") or name.endswith(".egg-info")


CHECKS: dict[str, Callable[[Connector], list[str]]] = {check.__name__: check for check in (
    migration_guide, breaking_changes_have_images, breaking_change_deadline, documentation, changelog_entry,
    versions_agree, metadata_file, tags_and_license, icon, sync_modes_table, https_only,
)}
