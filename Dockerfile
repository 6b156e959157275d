# destination-kvdb image, laid out like Airbyte's docker-images/Dockerfile.python-connector: the package is installed
# into /usr/local in a build stage and only /usr/local is carried over; the entrypoint is the console script; the
# container runs as the base image's non-root user `airbyte`.
#
# BASE_IMAGE defaults to connectorBuildOptions.baseImage in metadata.yaml (keep the two in sync). Any image with
# Python 3.11 at /usr/local/bin/python, pip, and a user `airbyte` will do; scripts/image.sh builds a stand-in of
# Airbyte's base from Debian packages and passes it with --build-arg BASE_IMAGE=...
ARG BASE_IMAGE=docker.io/airbyte/python-connector-base:4.0.2@sha256:9fdb1888c4264cf6fee473649ecb593f56f58e5d0096a87ee0b231777e2e3e73

FROM ${BASE_IMAGE} AS builder
ENV PIP_ROOT_USER_ACTION=ignore
WORKDIR /airbyte/integration_code
# Only what the package needs; tests, local server, benchmarks and secrets stay out (.dockerignore).
COPY requirements.lock setup.py ./
COPY destination_kvdb ./destination_kvdb
# Every dependency at the version and hash in requirements.lock (pip refuses anything unpinned or unhashed, so two
# builds get the same files), then the package alone, built with the locked setuptools rather than a fresh download.
RUN pip install --no-cache-dir --require-hashes -r requirements.lock \
    && pip install --no-cache-dir --no-deps --no-build-isolation --use-pep517 .

FROM ${BASE_IMAGE}
COPY --from=builder /usr/local /usr/local
WORKDIR /airbyte/integration_code

# The connector flushes every state it emits itself; unbuffered output also keeps logs in order.
ENV PYTHONUNBUFFERED=1
ENV AIRBYTE_ENTRYPOINT="/usr/local/bin/destination-kvdb"
ENTRYPOINT ["/usr/local/bin/destination-kvdb"]

LABEL io.airbyte.version=0.6.0
LABEL io.airbyte.name=airbyte/destination-kvdb

USER airbyte
