"""The connector as the Docker image builds it: only the files the build stage COPYs (minus .dockerignore), installed
with the Dockerfile's own `pip install`s (requirements.lock, then the package) into a clean virtualenv standing in for
the /usr/local the final stage takes, then run as the image's ENTRYPOINT runs it, from an empty WORKDIR.

No Docker engine is needed; what this catches is a file or dependency the image needs but does not get (a new module
outside the copied paths, an import missing from setup.py's install_requires, spec.json left out of the package).
It installs from the package index (about a minute with a warm pip cache), so it is opt-in: `-m image_install`.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pytest

from destination_kvdb import keys
from integration_tests.support.connector import REPO_ROOT, Run, captured_output, write_json
from integration_tests.support.kvdb import config_for, stored_values
from integration_tests.support.messages import (
    catalog,
    configured_stream,
    encode_lines,
    parse_output,
    record,
    stream_state,
)

INSTALL_TIMEOUT_SECONDS = 1200
RUN_TIMEOUT_SECONDS = 120

pytestmark = pytest.mark.image_install
IMAGE_PREFIX = "/usr/local"  # where the image installs; the final stage copies it whole
_LEAKY_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONUSERBASE")


@dataclass(frozen=True)
class Dockerfile:
    workdir: PurePosixPath  # the build stage's WORKDIR: where COPY puts the sources and pip runs
    copies: list[tuple[list[str], str]]  # (sources in the build context, destination) per COPY of the build stage
    pip_installs: list[list[str]]  # the arguments of each `pip install` of the build stage, in order
    entrypoint: list[str]  # the final stage's ENTRYPOINT (exec form)


@dataclass
class _Stage:
    workdir: PurePosixPath = PurePosixPath("/")
    copies: list[tuple[list[str], str]] = field(default_factory=list)
    copies_from_stages: list[tuple[list[str], str]] = field(default_factory=list)
    pip_installs: list[list[str]] = field(default_factory=list)
    entrypoint: list[str] = field(default_factory=list)


def parse_dockerfile(text: str) -> Dockerfile:
    """The build stage's WORKDIR, COPYs and `pip install`s, and the final stage's ENTRYPOINT (continuation lines
    joined). The final stage must take the build stage's /usr/local whole: the virtualenv stands in for that prefix."""
    stages: list[_Stage] = []
    for line in re.sub(r"\\\n", " ", text).splitlines():
        instruction, _, arguments = line.strip().partition(" ")
        instruction, arguments = instruction.upper(), arguments.strip()
        if instruction == "FROM":
            stages.append(_Stage())
        elif not stages:  # ARG before the first FROM
            continue
        elif instruction == "WORKDIR":
            stages[-1].workdir /= arguments
        elif instruction == "COPY":
            words = json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)
            *sources, destination = [word for word in words if not word.startswith("--")]
            from_stage = any(word.startswith("--from") for word in words)
            (stages[-1].copies_from_stages if from_stage else stages[-1].copies).append((sources, destination))
        elif instruction == "RUN":
            stages[-1].pip_installs += [shlex.split(args) for args in re.findall(r"pip install ([^&;|]*)", arguments)]
        elif instruction == "ENTRYPOINT":
            stages[-1].entrypoint = json.loads(arguments)
    assert len(stages) == 2, "expected a build stage and a final stage"
    build, final = stages
    assert build.copies and build.pip_installs, "the build stage has no COPY or no `pip install`"
    assert final.copies_from_stages == [([IMAGE_PREFIX], IMAGE_PREFIX)] and not (final.copies or final.pip_installs), (
        "the final stage must take exactly the build stage's /usr/local"
    )
    assert final.entrypoint, "the final stage has no ENTRYPOINT in exec form"
    return Dockerfile(build.workdir, build.copies, build.pip_installs, final.entrypoint)


def _pattern_regex(pattern: str) -> re.Pattern:
    """A .dockerignore pattern (Go filepath.Match plus `**`) as a regex over slash-separated relative paths."""
    parts = re.split(r"(\*\*/?|\*|\?)", pattern.strip("/"))
    wildcards = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
    return re.compile("".join(wildcards.get(part, re.escape(part)) for part in parts))


def dockerignore_filter(text: str):
    """is_ignored(relative_path): Docker's rule, the last matching pattern wins (`!` re-includes); a pattern that
    matches a directory matches everything in it."""
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rules.append((line.startswith("!"), _pattern_regex(line.lstrip("!"))))

    def is_ignored(relative_path: str) -> bool:
        parts = relative_path.split("/")
        candidates = ["/".join(parts[: length + 1]) for length in range(len(parts))]
        ignored = False
        for is_exception, regex in rules:
            if any(regex.fullmatch(candidate) for candidate in candidates):
                ignored = not is_exception
        return ignored

    return is_ignored


def copy_build_context(context: Path, dockerfile: Dockerfile, target: Path) -> None:
    """Puts into target what the COPY instructions put into the image's WORKDIR, honouring .dockerignore."""
    ignore_file = context / ".dockerignore"
    is_ignored = dockerignore_filter(ignore_file.read_text() if ignore_file.exists() else "")
    for sources, destination in dockerfile.copies:
        into = target / (dockerfile.workdir / destination).relative_to(dockerfile.workdir)
        as_directory = destination.endswith("/") or len(sources) > 1
        for source in sources:
            matches = [path for path in sorted(context.glob(source)) if not is_ignored(path.relative_to(context).as_posix())]
            assert matches, f"COPY {source}: nothing in the build context (missing or .dockerignore'd)"
            for path in matches:
                if path.is_dir():
                    _copy_tree(context, path, into, is_ignored)
                else:
                    _copy_file(path, into / path.name if as_directory else into)


def _copy_tree(context: Path, directory: Path, into: Path, is_ignored) -> None:
    """A directory source: its contents (not the directory itself) go into the destination, as COPY does."""
    for path in sorted(directory.rglob("*")):
        if path.is_file() and not is_ignored(path.relative_to(context).as_posix()):
            _copy_file(path, into / path.relative_to(directory))


def _copy_file(source: Path, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, destination)


def isolated_env() -> dict[str, str]:
    """This environment without what would let pip or the connector see this checkout or its virtualenv."""
    return {name: value for name, value in os.environ.items() if name not in _LEAKY_ENV}


@dataclass(frozen=True)
class InstalledImage:
    prefix: Path  # the clean virtualenv, standing in for the image's /usr/local
    workdir: Path  # the final stage's WORKDIR: empty, as in the image
    entrypoint: list[str]

    def run(self, *args: str, stdin: bytes = b"") -> Run:
        """The ENTRYPOINT with ARGS from the WORKDIR, its /usr/local paths in the virtualenv, seeing only its install."""
        command = [self._in_prefix(word) for word in self.entrypoint]
        completed = subprocess.run(
            [*command, *args], input=stdin, capture_output=True, timeout=RUN_TIMEOUT_SECONDS, env=isolated_env(), cwd=self.workdir
        )
        stdout, stderr = completed.stdout.decode(), completed.stderr.decode()
        captured_output.extend([stdout, stderr])
        return Run(completed.returncode, stdout, stderr, parse_output(stdout))

    def _in_prefix(self, word: str) -> str:
        """A path under the image's /usr/local, as the same path in the virtualenv; other words as they are."""
        path = PurePosixPath(word)
        return str(self.prefix / path.relative_to(IMAGE_PREFIX)) if path.is_relative_to(IMAGE_PREFIX) else word

    def pip(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.prefix / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", *args],
            capture_output=True, text=True, timeout=INSTALL_TIMEOUT_SECONDS, env=isolated_env(), cwd=cwd,
        )


@pytest.fixture(scope="module")
def installed_image(tmp_path_factory):
    """Builds once per module; the copy and the virtualenv (a few hundred MB) are removed afterwards."""
    root = tmp_path_factory.mktemp("image")
    dockerfile = parse_dockerfile((REPO_ROOT / "Dockerfile").read_text())
    build_workdir, venv, final_workdir = root / "build", root / "venv", root / "integration_code"
    try:
        copy_build_context(REPO_ROOT, dockerfile, build_workdir)
        final_workdir.mkdir()
        subprocess.run(
            [sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=RUN_TIMEOUT_SECONDS, env=isolated_env()
        )
        image = InstalledImage(venv, final_workdir, dockerfile.entrypoint)
        for pip_install_args in dockerfile.pip_installs:
            # The image's own pip arguments, but with the pip cache: the image drops it to stay small, a test wants speed.
            pip_args = [arg for arg in pip_install_args if arg != "--no-cache-dir"]
            installed = image.pip("install", *pip_args, cwd=build_workdir)
            assert installed.returncode == 0, f"pip install {shlex.join(pip_args)} failed:\n{installed.stdout[-3000:]}\n{installed.stderr[-3000:]}"
        yield image
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_the_image_installs_only_the_locked_versions_and_they_satisfy_the_package(installed_image):
    """Two builds a day apart get the same packages: everything installed besides pip and the connector itself is
    pinned in requirements.lock (the Dockerfile installs it with --require-hashes), and the pins meet setup.py."""
    lock_file = REPO_ROOT / "requirements.lock"
    assert lock_file.is_file(), "requirements.lock is missing: run bash scripts/lock.sh"
    locked = set(re.findall(r"^([A-Za-z0-9._-]+==[^\s;\\]+)", lock_file.read_text(), re.MULTILINE))
    frozen = installed_image.pip("freeze", "--all", "--exclude", "pip", "--exclude", "destination-kvdb")
    installed = {_normalized(line) for line in frozen.stdout.splitlines()}
    assert installed - {_normalized(pin) for pin in locked} == set()
    checked = installed_image.pip("check")
    assert checked.returncode == 0, checked.stdout


def _normalized(pin: str) -> str:
    name, _, version = pin.partition("==")
    return f"{re.sub(r'[-_.]+', '-', name).lower()}=={version}"


def test_the_installed_image_prints_its_spec(installed_image):
    run = installed_image.run("spec")
    assert run.exit_code == 0, run.stderr[-3000:]
    (spec_message,) = run.of_type("SPEC")
    expected = json.loads((REPO_ROOT / "destination_kvdb" / "spec.json").read_text())
    assert spec_message["spec"]["connectionSpecification"] == expected["connectionSpecification"]


def test_the_installed_image_writes_records_and_echoes_the_state(installed_image, kvdb_bucket, tmp_path):
    users = [{"id": number, "name": f"user {number} ü", "score": number / 4} for number in range(5)]
    state = stream_state("users", cursor=4)
    config = write_json(tmp_path / "config.json", config_for(kvdb_bucket))
    configured = write_json(tmp_path / "catalog.json", catalog(configured_stream("users", "append")))
    messages = [record("users", data) for data in users] + [state]

    run = installed_image.run("write", "--config", config, "--catalog", configured, stdin=encode_lines(messages))

    assert run.exit_code == 0, run.stderr[-3000:]
    assert run.errors == []
    (echoed,) = run.states
    assert echoed["state"]["stream"] == state["state"]["stream"]
    assert echoed["state"]["destinationStats"]["recordCount"] == len(users)
    assert stored_values(kvdb_bucket, keys.stream_prefix("users")) == users
