#!/usr/bin/env bash
# Makes a Docker engine and the tests' image available: installs Debian's docker.io and
# busybox-static when missing (as root), starts dockerd when nothing answers on its socket, and
# imports `lc-busybox` from a root filesystem built out of busybox-static (no image can be
# pulled on these machines). Idempotent: a second run finds everything in place and returns.
# Prints a note and exits 0 when it cannot do its job outside CI; fails under CI=true.
set -euo pipefail

IMAGE="${LC_DOCKER_IMAGE:-lc-busybox}"
fail() {
    echo "docker-setup: $*" >&2
    if [ -n "${CI:-}" ]; then exit 1; fi
    echo "docker-setup: not under CI; the docker tests will skip" >&2
    exit 0
}

if ! command -v dockerd >/dev/null 2>&1 || ! command -v busybox >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then fail "docker.io or busybox-static missing and not root"; fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || true
    apt-get install -y -qq docker.io busybox-static >/dev/null || fail "apt-get install failed"
fi

if ! docker info >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then fail "no engine answers and not root to start dockerd"; fi
    echo "docker-setup: starting dockerd (log: /tmp/dockerd.log)"
    nohup dockerd >/tmp/dockerd.log 2>&1 &
    for _ in $(seq 1 60); do
        if docker info >/dev/null 2>&1; then break; fi
        sleep 1
    done
    docker info >/dev/null 2>&1 || { tail -20 /tmp/dockerd.log >&2; fail "dockerd did not answer within 60s"; }
fi

if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
    rootfs="$(mktemp -d)"
    trap 'rm -rf "$rootfs"' EXIT
    mkdir -p "$rootfs/bin" "$rootfs/tmp" "$rootfs/etc" "$rootfs/proc" "$rootfs/sys" "$rootfs/dev"
    cp "$(command -v busybox)" "$rootfs/bin/busybox"
    "$rootfs/bin/busybox" --install -s "$rootfs/bin"
    # Symlinks made by --install point at the host's path of busybox; point them inside.
    for link in "$rootfs"/bin/*; do
        [ -L "$link" ] && ln -sf /bin/busybox "$link"
    done
    tar -C "$rootfs" -c . | docker import - "$IMAGE" >/dev/null
    echo "docker-setup: imported image $IMAGE"
fi
echo "docker-setup: engine $(docker version --format '{{.Server.Version}}') ready, image $IMAGE present"
