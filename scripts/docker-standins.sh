#!/usr/bin/env bash
# Stand-ins for the official images docker-compose.yml uses, built from Debian 12 packages, for
# machines that cannot pull from an image registry; also sets up a Docker engine and Compose v2
# on Debian when they are missing and we are root.
#   bash scripts/docker-standins.sh [ENV_FILE]    engine + images; writes NAME=image lines for compose
#   bash scripts/docker-standins.sh --engine      only make sure `docker compose` reaches an engine
# Idempotent: a running engine and existing images are reused (STANDINS_REBUILD=1 rebuilds images).
# A dockerd it starts logs to DOCKERD_LOG (default /var/log/bannerservice-dockerd.log).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CACHE="${STANDINS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bannerservice-standins}"
PREFIX=bannerservice-standin
BASE_IMAGE="$PREFIX/debian:bookworm"
PYTHON_IMAGE="$PREFIX/python:3.11"
NGINX_IMAGE="$PREFIX/nginx:bookworm"
REDIS_IMAGE="$PREFIX/redis:bookworm"
POSTGRES_IMAGE="$PREFIX/postgres:bookworm"
S3_IMAGE="$PREFIX/s3:moto"
DOCKERD_LOG="${DOCKERD_LOG:-/var/log/bannerservice-dockerd.log}"
# The Debian release that packages Compose v2 (2.26 runs on Debian 12's libc).
COMPOSE_SUITE=trixie

debian_mirror() {
    # The Debian archive the machine's apt sources point at (deb822 or one-line format).
    local uri
    uri=$( { grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}';
             grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | sed 's/\[[^]]*\]//' | awk '{print $2}'; } \
           | grep -v -e security -e '^$' | grep '/debian/\?$' | head -1)
    echo "${uri:-http://deb.debian.org/debian}"
}

engine_answers() { docker info >/dev/null 2>&1; }

ensure_engine() {
    engine_answers && return 0
    if ! is_root || ! command -v apt-get >/dev/null; then
        say "no Docker engine answers, and only root on Debian can set one up here"; return 1
    fi
    command -v dockerd >/dev/null || apt_install docker.io || return 1
    say "starting dockerd (log: $DOCKERD_LOG)"
    # 9>&-: the daemon must not inherit the builders' lock (main's fd 9), or it holds it for as long as it runs.
    setsid dockerd >"$DOCKERD_LOG" 2>&1 </dev/null 9>&- &
    for _ in $(seq 60); do engine_answers && return 0; sleep 1; done
    say "dockerd did not answer within 60 s; see $DOCKERD_LOG"; return 1
}

ensure_compose() {
    docker compose version >/dev/null 2>&1 && return 0
    is_root && command -v apt-get >/dev/null || { say "docker has no compose plugin; install Compose v2"; return 1; }
    say "fetching Compose v2 from Debian $COMPOSE_SUITE (private apt state in $CACHE/apt)"
    local apt="$CACHE/apt" keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    mkdir -p "$apt/lists/partial" "$apt/archives/partial" "$apt/deb"
    echo "deb [signed-by=$keyring] $(debian_mirror) $COMPOSE_SUITE main" > "$apt/sources.list"
    local opts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
                -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt" -o APT::Sandbox::User=root)
    apt-get -qq "${opts[@]}" update >/dev/null
    (cd "$apt/deb" && rm -f ./*.deb && apt-get -qq "${opts[@]}" download docker-compose >/dev/null)
    rm -rf "$apt/x" && dpkg-deb -x "$apt"/deb/docker-compose_*.deb "$apt/x"
    mkdir -p "$HOME/.docker/cli-plugins"
    install -m 0755 "$apt/x/usr/libexec/docker/cli-plugins/docker-compose" "$HOME/.docker/cli-plugins/docker-compose"
    docker compose version >/dev/null
}

has_image() { [ -z "${STANDINS_REBUILD:-}" ] && docker image inspect "$1" >/dev/null 2>&1; }

build_base() {
    has_image "$BASE_IMAGE" && return 0
    apt_install debootstrap || return 1
    local rootfs="$CACHE/rootfs-bookworm"
    rm -rf "$rootfs"
    say "debootstrap bookworm (minbase) from $(debian_mirror)"
    debootstrap --variant=minbase bookworm "$rootfs" "$(debian_mirror)" >"$CACHE/debootstrap.log" 2>&1 \
        || { say "debootstrap failed; see $CACHE/debootstrap.log"; return 1; }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | docker import -c 'CMD ["bash"]' - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
}

build() {
    # build IMAGE: a Dockerfile on stdin, the build context holds ca-bundle.crt (the host's CA bundle).
    local image="$1" context
    has_image "$image" && { cat >/dev/null; return 0; }
    say "building $image"
    context=$(mktemp -d)
    cat > "$context/Dockerfile"
    cp "$(host_ca_bundle)" "$context/ca-bundle.crt"
    local log="$CACHE/build-${image//[\/:]/_}.log"
    if ! docker build -t "$image" "$context" >"$log" 2>&1; then
        rm -rf "$context"; tail -20 "$log" >&2; say "building $image failed; see $log"; return 1
    fi
    rm -rf "$context"
}

host_ca_bundle() {
    # The bundle the host's pip trusts (pip config), else the system one.
    local cert
    cert=$(pip config list 2>/dev/null | sed -n "s/^[a-z:.]*cert='\(.*\)'$/\1/p" | head -1)
    [ -f "${cert:-}" ] || cert=/etc/ssl/certs/ca-certificates.crt
    echo "$cert"
}

APT_RUN='RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends'
APT_CLEAN='&& rm -rf /var/lib/apt/lists/*'

build_images() {
    build_base
    # Debian's python3.11 as `python`, pip allowed to install system-wide, pip trusting the host's CAs.
    build "$PYTHON_IMAGE" <<EOF
FROM $BASE_IMAGE
$APT_RUN python3 python3-pip python-is-python3 ca-certificates $APT_CLEAN
COPY ca-bundle.crt /usr/local/share/bannerservice-ca-bundle.crt
ENV PIP_CERT=/usr/local/share/bannerservice-ca-bundle.crt PIP_BREAK_SYSTEM_PACKAGES=1 \\
    PIP_DISABLE_PIP_VERSION_CHECK=1 LANG=C.UTF-8
CMD ["python3"]
EOF
    # Like the official image: a user "nginx", envsubst, busybox-like wget, logs to the container's output.
    build "$NGINX_IMAGE" <<EOF
FROM $BASE_IMAGE
$APT_RUN nginx gettext-base wget $APT_CLEAN \\
    && useradd --system --no-create-home --shell /usr/sbin/nologin nginx \\
    && ln -sf /dev/stdout /var/log/nginx/access.log && ln -sf /dev/stderr /var/log/nginx/error.log
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
EOF
    # Like the official image: runs as "redis" in /data, protected mode off (the network is private).
    build "$REDIS_IMAGE" <<EOF
FROM $BASE_IMAGE
$APT_RUN redis-server $APT_CLEAN \\
    && mkdir -p /data && chown redis:redis /data
WORKDIR /data
USER redis
CMD ["redis-server", "--protected-mode", "no"]
EOF
    # Like the official image: POSTGRES_USER/PASSWORD/DB create the cluster on first start.
    build "$POSTGRES_IMAGE" <<'EOF'
FROM bannerservice-standin/debian:bookworm
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /var/lib/postgresql/data /var/run/postgresql \
    && chown postgres:postgres /var/lib/postgresql/data /var/run/postgresql && chmod 700 /var/lib/postgresql/data \
    && printf '%s\n' '#!/bin/sh' 'set -e' \
       'if [ ! -s "$PGDATA/PG_VERSION" ]; then' \
       '  printf "%s\n" "$POSTGRES_PASSWORD" > /tmp/pw' \
       '  initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile=/tmp/pw --auth-local=trust --auth-host=scram-sha-256 >/dev/null' \
       '  rm /tmp/pw' \
       '  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"' \
       '  pg_ctl -D "$PGDATA" -o "-c listen_addresses=" -w start >/dev/null' \
       '  [ "${POSTGRES_DB:-$POSTGRES_USER}" = postgres ] || createdb -U "$POSTGRES_USER" "${POSTGRES_DB:-$POSTGRES_USER}"' \
       '  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null' \
       'fi' 'exec "$@"' > /usr/local/bin/postgres-entrypoint && chmod 755 /usr/local/bin/postgres-entrypoint
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data
USER postgres
ENTRYPOINT ["postgres-entrypoint"]
CMD ["postgres", "-c", "listen_addresses=*"]
EOF
    # MinIO is not packaged: moto's S3 server, at the version the test suite pins.
    local moto
    moto=$(sed -n 's/^ *"\(moto\[server\]==[^"]*\)".*/\1/p' "$ROOT/pyproject.toml")
    build "$S3_IMAGE" <<EOF
FROM $PYTHON_IMAGE
RUN pip install -q --no-cache-dir '${moto:-moto[server]}'
EXPOSE 9000
CMD ["moto_server", "-H", "0.0.0.0", "-p", "9000"]
EOF
}

write_env() {
    cat > "$1" <<EOF
PYTHON_IMAGE=$PYTHON_IMAGE
NGINX_IMAGE=$NGINX_IMAGE
REDIS_IMAGE=$REDIS_IMAGE
POSTGRES_IMAGE=$POSTGRES_IMAGE
S3_IMAGE=$S3_IMAGE
EOF
}

main() {
    mkdir -p "$CACHE"
    # One builder at a time: several worktrees share the engine and the image names.
    exec 9>"$CACHE/lock"
    flock 9
    ensure_engine
    ensure_compose
    [ "${1:-}" = --engine ] && return 0
    local started=$SECONDS
    build_images
    local env_file="${1:-$RUN_DIR/compose-standins.env}"
    write_env "$env_file"
    say "stand-in images ready ($((SECONDS - started)) s); compose variables in $env_file"
}

main "$@"
