#!/usr/bin/env bash
# Builds, from Debian's packages (and the Rust toolchain installed here), the base images that
# deploy/Dockerfile and deploy/compose.yaml start from, under the names of the official images,
# for a Docker engine that cannot pull:
#
#   debian:bookworm-slim         debootstrap (minbase) of Debian 12, imported
#   rust:<X.Y>-slim-bookworm     the above + gcc, libc6-dev, ca-certificates + this machine's
#                                Rust toolchain (`rustc --print sysroot`, without its docs)
#                                and its local certificate authorities
#                                (/usr/local/share/ca-certificates)
#   postgres:15-bookworm         Debian's postgresql-15, with an entry point that honours the
#                                official image's POSTGRES_* variables and PGDATA
#   redis:7-bookworm             Debian's redis-server, `redis-server` as the command
#   nats:2.9                     Debian's nats-server, as the entry point
#   prom/prometheus:v2.42.0      Debian's prometheus, as the entry point
#
# With a registry in reach, none of this is needed: `docker build` and `docker-compose` pull
# the official images of the same names.
#
#   deploy/images/build.sh            # builds the missing images
#   FORCE=1 deploy/images/build.sh    # builds every image again
#
# Knobs: DEBIAN_MIRROR (http://deb.debian.org/debian), CACHE (/var/cache/strata-images: the
# debootstrap root file system, kept between runs), FORCE (0).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/deploy/images
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${CACHE:-/var/cache/strata-images}
FORCE=${FORCE:-0}

log() { printf '== %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
have_image() { [[ $FORCE != 1 ]] && docker image inspect "$1" >/dev/null 2>&1; }

# debian:bookworm-slim: a minimal Debian 12 root file system, without package lists, caches,
# documentation or locales (as the official slim image).
build_debian() {
    have_image debian:bookworm-slim && { log "debian:bookworm-slim is there"; return; }
    command -v debootstrap >/dev/null || {
        log "installing debootstrap"
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq debootstrap >/dev/null
    }
    local rootfs=$CACHE/rootfs-bookworm
    if [[ ! -x $rootfs/usr/bin/apt-get || $FORCE == 1 ]]; then
        log "debootstrap bookworm from $DEBIAN_MIRROR"
        as_root rm -rf "$rootfs"
        as_root mkdir -p "$CACHE"
        as_root debootstrap --variant=minbase bookworm "$rootfs" "$DEBIAN_MIRROR" >/dev/null
    fi
    as_root rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/* \
        "$rootfs"/usr/share/info/*
    log "importing debian:bookworm-slim"
    as_root tar -C "$rootfs" -c . | docker import \
        -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        -c 'CMD ["bash"]' - debian:bookworm-slim >/dev/null
}

# rust:<X.Y>-slim-bookworm: the toolchain this machine builds strata with, laid out as in the
# official image (RUSTUP_HOME=/usr/local/rustup, CARGO_HOME=/usr/local/cargo on PATH).
build_rust() {
    local sysroot version minor tag
    sysroot=$(rustc --print sysroot)
    version=$(rustc --version | awk '{print $2}')
    minor=${version%.*}
    tag=rust:$minor-slim-bookworm
    have_image "$tag" && { log "$tag is there"; return; }
    log "building $tag from $sysroot"
    local context
    context=$(mktemp -d)
    trap 'rm -rf "$context"' RETURN
    mkdir -p "$context/toolchain"
    # The toolchain without its documentation (800 MB of HTML).
    tar -C "$sysroot" --exclude=./share/doc -c . | tar -C "$context/toolchain" -x
    # Certificate authorities this machine added locally (e.g. an outbound proxy's), so cargo
    # in the image reaches crates.io the way it does here.
    mkdir -p "$context/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$context/ca-certificates/" 2>/dev/null || true
    cp "$HERE/rust.Dockerfile" "$context/Dockerfile"
    docker build -q --build-arg "RUST_VERSION=$version" -t "$tag" -t "rust:$version-slim-bookworm" \
        "$context" >/dev/null
}

# A service image from Debian's packages: NAME, the Dockerfile in this directory.
build_service() {
    local tag=$1 file=$2
    have_image "$tag" && { log "$tag is there"; return; }
    log "building $tag"
    docker build -q -t "$tag" -f "$HERE/$file" "$HERE" >/dev/null
}

command -v docker >/dev/null || { log "docker is needed"; exit 1; }
build_debian
build_rust
build_service postgres:15-bookworm postgres.Dockerfile
build_service redis:7-bookworm redis.Dockerfile
build_service nats:2.9 nats.Dockerfile
build_service prom/prometheus:v2.42.0 prometheus.Dockerfile
docker image ls --format '{{.Repository}}:{{.Tag}}\t{{.Size}}' \
    | grep -E '^(debian|rust|postgres|redis|nats):' >&2
