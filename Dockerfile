# destination-kvdb image, on Airbyte's Python connector base image (Python 3.11, non-root user
# `airbyte`). Keep the base image in sync with connectorBuildOptions.baseImage in metadata.yaml.
FROM docker.io/airbyte/python-connector-base:4.0.2@sha256:9fdb1888c4264cf6fee473649ecb593f56f58e5d0096a87ee0b231777e2e3e73

WORKDIR /airbyte/integration_code

# Only what the package needs; tests, local server, benchmarks and secrets stay out (.dockerignore).
COPY setup.py main.py ./
COPY destination_kvdb ./destination_kvdb
RUN pip install --no-cache-dir . \
    && rm -rf build *.egg-info

# The connector flushes every state it emits itself; unbuffered output also keeps logs in order.
ENV PYTHONUNBUFFERED=1
ENV AIRBYTE_ENTRYPOINT="python /airbyte/integration_code/main.py"
ENTRYPOINT ["python", "/airbyte/integration_code/main.py"]

LABEL io.airbyte.version=0.3.0
LABEL io.airbyte.name=airbyte/destination-kvdb

USER airbyte
