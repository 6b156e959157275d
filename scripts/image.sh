#!/usr/bin/env bash
# Builds the connector's image and runs it the way Airbyte does, without a Docker engine: buildah builds, podman runs
# (as root). Steps:
#   1. installs buildah, podman, podman-docker, runc and debootstrap from Debian's packages if missing;
#   2. configures podman if it has no configuration yet: runc (crun refuses hybrid cgroups), no default ulimits,
#      host networking, storage driver overlay or, where overlay cannot mount, vfs;
#   3. builds a stand-in for Airbyte's python-connector-base once (no registry holding the real one is reachable
#      here): Debian bookworm from the machine's own Debian mirror, Python 3.11 at /usr/local/bin/python with pip,
#      user `airbyte` (uid 1000) owning /airbyte, UTC;
#   4. builds the image from the Dockerfile with --build-arg BASE_IMAGE=<stand-in>;
#   5. runs README's docker commands in it (scripts/image_runs.py): spec, check, and write with stdin, config and
#      catalog mounted read-only, against the local KvDB on loopback, and checks what they print and store;
#   6. with IMAGE_TESTS=1 (the default), runs airbyte-cdk's standard image tests against the built image, the
#      scenario that needs secrets/config.json pointed at the same local KvDB.
# Prints the image size and each step's time; exits non-zero on any failure. Needs root and .venv (scripts/test.sh).
#
#   IMAGE=airbyte/destination-kvdb:dev   tag of the built image
#   REBUILD_BASE=1                      rebuild the stand-in base
#   IMAGE_TESTS=0                       skip the CDK's image tests
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE="${IMAGE:-airbyte/destination-kvdb:dev}"
STAND_IN_BASE="localhost/airbyte/python-connector-base-stand-in:3.11-bookworm"
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
PYTHON=.venv/bin/python

WORK="$(mktemp -d)"  # the stand-in's root filesystem while it is built
trap 'rm -rf "$WORK"' EXIT
set -E
trap 'echo "image.sh: failed: $BASH_COMMAND (line $LINENO)" >&2' ERR

fail() { echo "image.sh: $*" >&2; exit 1; }
timed() {  # timed <label> <command...>: runs the command (set -e stops the script if it fails), prints its time
  local label="$1" started=$SECONDS
  shift
  "$@"
  echo "== $label: $((SECONDS - started)) s"
}

[[ $(id -u) == 0 ]] || fail "run as root (buildah and podman run rootful here)"
[[ -x $PYTHON ]] || fail "$PYTHON is missing: run bash scripts/test.sh first"

install_tools() {
  local missing=()
  for tool in buildah podman runc debootstrap; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  [[ -x /usr/bin/docker ]] || missing+=(podman-docker)
  if ((${#missing[@]})); then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q buildah podman podman-docker runc debootstrap
  fi
}

configure_podman() {
  mkdir -p /etc/containers
  touch /etc/containers/nodocker  # quiets podman-docker's notice on stderr
  if [[ ! -f /etc/containers/containers.conf ]]; then
    printf '%s\n' '[containers]' 'default_ulimits = []' 'netns = "host"' '[engine]' 'runtime = "runc"' \
      >/etc/containers/containers.conf
  fi
  if [[ ! -f /etc/containers/storage.conf ]]; then
    local driver=overlay probe
    probe="$(mktemp -d)"
    podman --root "$probe/root" --runroot "$probe/run" --storage-driver overlay info >/dev/null 2>&1 || driver=vfs
    rm -rf "$probe"
    printf '%s\n' '[storage]' "driver = \"$driver\"" 'runroot = "/run/containers/storage"' \
      'graphroot = "/var/lib/containers/storage"' >/etc/containers/storage.conf
  fi
  [[ $(podman info --format '{{.Host.OCIRuntime.Name}}') == runc ]] \
    || fail "podman does not use runc: set runtime = \"runc\" under [engine] in /etc/containers/containers.conf"
  echo "podman: runtime runc, storage driver $(podman info --format '{{.Store.GraphDriverName}}')"
}

debian_mirror() {  # the mirror this machine's apt uses for bookworm, so debootstrap needs nothing else
  apt-get indextargets --format '$(REPO_URI) $(RELEASE)' | awk '$2 == "bookworm" { print $1; exit }'
}

build_stand_in_base() {
  if [[ ${REBUILD_BASE:-0} != 1 ]] && podman image exists "$STAND_IN_BASE"; then
    echo "stand-in base $STAND_IN_BASE exists (REBUILD_BASE=1 rebuilds it)"
    return
  fi
  local mirror rootfs="$WORK/rootfs"
  mirror="$(debian_mirror)"
  [[ -n $mirror ]] || fail "no bookworm mirror in apt's sources"
  debootstrap --variant=minbase --include=python3,python3-pip,ca-certificates,tzdata bookworm "$rootfs" "$mirror" \
    >"$WORK/debootstrap.log" 2>&1 || { tail -20 "$WORK/debootstrap.log" >&2; fail "debootstrap from $mirror failed"; }
  # As in Airbyte's Dockerfile.python-connector-base: UTC, a system user airbyte (uid 1000) owning /airbyte, pip
  # installing into /usr/local (Debian marks its Python as externally managed; the real base's Python is not).
  chroot "$rootfs" /bin/sh -euc '
    ln -snf /usr/share/zoneinfo/Etc/UTC /etc/localtime && echo Etc/UTC >/etc/timezone
    ln -s /usr/bin/python3 /usr/local/bin/python
    rm -f /usr/lib/python3.11/EXTERNALLY-MANAGED
    groupadd --system --gid 1000 airbyte
    useradd --system -K SYS_UID_MAX=1000 --uid 1000 --gid airbyte --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin airbyte
    mkdir --mode 755 /airbyte && chown airbyte:airbyte /airbyte
    apt-get clean && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/* /usr/share/locale/*'
  tar -C "$rootfs" -c . | podman import --quiet --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["python"]' - "$STAND_IN_BASE" >/dev/null
  rm -rf "$rootfs"
}

build_image() {
  # RUN steps download from PyPI: host networking, and the machine's CA bundle (which may hold a proxy's CA) mounted
  # read-only over the stand-in's own, where Debian's pip looks.
  buildah bud --quiet --layers --network host -v "$CA_BUNDLE:$CA_BUNDLE:ro" \
    --build-arg "BASE_IMAGE=$STAND_IN_BASE" -t "$IMAGE" . >/dev/null
  echo "image $IMAGE: $(podman image inspect --format '{{.Size}}' "$IMAGE" | awk '{ printf "%.0f MB", $1 / 1e6 }')"
}

started=$SECONDS
timed "tools" install_tools
timed "podman configuration" configure_podman
timed "stand-in base" build_stand_in_base
timed "image build" build_image
if [[ ${IMAGE_TESTS:-1} == 1 ]]; then
  timed "runs in the image, then airbyte-cdk's image tests" "$PYTHON" scripts/image_runs.py --image "$IMAGE" --cdk-image-tests
else
  timed "runs in the image" "$PYTHON" scripts/image_runs.py --image "$IMAGE"
fi
echo "== image.sh: all passed in $((SECONDS - started)) s"
