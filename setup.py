"""Packaging for destination-kvdb: the connector package only (the local KvDB server stays out)."""

from setuptools import find_packages, setup

MAIN_REQUIREMENTS = [
    "airbyte-cdk>=7,<8",
    "requests>=2.31,<3",
    "orjson>=3.9,<4",
    "msgspec>=0.19,<0.23",
]

TEST_REQUIREMENTS = [
    "pytest>=8,<9",
    "pytest-mock>=3.12,<4",
    "hypothesis>=6.100,<7",
    "pytest-xdist>=3.5,<4",
]

setup(
    name="destination-kvdb",
    version="0.6.0",
    description="Airbyte destination that writes records into KvDB (kvdb.io).",
    author="destination-kvdb maintainers",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["destination_kvdb", "destination_kvdb.*"]),
    install_requires=MAIN_REQUIREMENTS,
    package_data={"destination_kvdb": ["spec.json"]},
    extras_require={"tests": TEST_REQUIREMENTS},
    entry_points={"console_scripts": ["destination-kvdb=destination_kvdb.run:run"]},
)
