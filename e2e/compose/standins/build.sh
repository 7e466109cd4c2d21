#!/usr/bin/env bash
# Builds local stand-ins for the third-party images docker-compose.yml names, for a machine whose
# Docker Engine can pull no image: the test scaffolding of e2e/compose_test.go, never what the
# compose file tells users to run.
#
#   registry:3              distribution's registry command (standins/registry), built with Go
#   redis:7                 Debian's redis-server and redis-cli with their libraries, and the
#                           shell and coreutils redis-init runs (the real image is Debian's too)
#   prom/prometheus:v3.5.0  Debian's prometheus with its libraries
#
# Grafana has no stand-in (Debian ships none); the test starts the other services by name.
# Each stand-in carries the label org.regoauth.standin=true. An image of the same name without
# that label is a real one and is left alone, so on a machine that has the real images the test
# runs against them. Images are built FROM scratch over a folder of files, so nothing is pulled;
# the engine's layer cache makes a rebuild of unchanged files take a second.
set -euo pipefail
cd "$(dirname "$0")"
repo=$(cd ../../.. && pwd)

compose_image() { # the image a service of docker-compose.yml names
  sed -n "/^  $1:\$/,/^  [a-z]/s/^    image: //p" "$repo/docker-compose.yml" | head -1
}
REGISTRY_IMAGE=$(compose_image registry)
REDIS_IMAGE=$(compose_image redis)
PROMETHEUS_IMAGE=$(compose_image prometheus)
for v in REGISTRY_IMAGE REDIS_IMAGE PROMETHEUS_IMAGE; do
  [ -n "${!v}" ] || { echo "build.sh: no image for ${v%_IMAGE} in docker-compose.yml" >&2; exit 1; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# real IMAGE: true when IMAGE exists and is not a stand-in.
real() {
  local label
  label=$(docker image inspect -f '{{index .Config.Labels "org.regoauth.standin"}}' "$1" 2>/dev/null) || return 1
  [ "$label" != true ]
}

# add ROOTFS FILE [AS]: copies FILE (symlinks followed) to ROOTFS/AS, with every shared library
# it loads, at the paths the dynamic loader looks for them.
add() {
  local rootfs=$1 file=$2 as=${3:-$2}
  mkdir -p "$rootfs$(dirname "$as")"
  cp -L "$file" "$rootfs$as"
  ldd "$file" 2>/dev/null | grep -oE '/[^ ]+' | while read -r lib; do
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
  done
}

# build IMAGE DIR: builds DIR/Dockerfile over DIR/rootfs.
build() {
  local start=$SECONDS out
  # The engine's notice about the classic builder is noise unless the build fails.
  out=$(docker build -q -t "$1" "$2" 2>&1) || { echo "$out" >&2; return 1; }
  echo "built stand-in $1 in $((SECONDS - start))s"
}

if real "$REGISTRY_IMAGE"; then
  echo "using $REGISTRY_IMAGE as it is (not a stand-in)"
else
  d=$work/registry
  mkdir -p "$d/rootfs/bin" "$d/rootfs/etc/distribution" "$d/rootfs/var/lib/registry"
  (cd "$repo" && CGO_ENABLED=0 go build -o "$d/rootfs/bin/registry" ./e2e/compose/standins/registry)
  cat >"$d/Dockerfile" <<'EOF'
FROM scratch
COPY rootfs/ /
LABEL org.regoauth.standin=true
EXPOSE 5000
ENTRYPOINT ["/bin/registry", "serve"]
CMD ["/etc/distribution/config.yml"]
EOF
  build "$REGISTRY_IMAGE" "$d"
fi

if real "$REDIS_IMAGE"; then
  echo "using $REDIS_IMAGE as it is (not a stand-in)"
else
  d=$work/redis
  add "$d/rootfs" "$(command -v redis-server)" /usr/local/bin/redis-server
  add "$d/rootfs" "$(command -v redis-cli)" /usr/local/bin/redis-cli
  add "$d/rootfs" "$(command -v dash)" /bin/sh
  for tool in od tr sha256sum cut chmod chown mv; do
    add "$d/rootfs" "$(command -v "$tool")" "/bin/$tool"
  done
  mkdir -p "$d/rootfs/data"
  cat >"$d/Dockerfile" <<'EOF'
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/bin:/bin
WORKDIR /data
LABEL org.regoauth.standin=true
EXPOSE 6379
CMD ["redis-server"]
EOF
  build "$REDIS_IMAGE" "$d"
fi

if real "$PROMETHEUS_IMAGE"; then
  echo "using $PROMETHEUS_IMAGE as it is (not a stand-in)"
else
  d=$work/prometheus
  add "$d/rootfs" "$(command -v prometheus)" /bin/prometheus
  mkdir -p "$d/rootfs/etc/prometheus" "$d/storage"
  cat >"$d/Dockerfile" <<'EOF'
FROM scratch
COPY rootfs/ /
# The storage folder belongs to nobody, as in the real image. COPY creates it with that owner
# only when it does not exist yet.
COPY --chown=65534:65534 storage/ /prometheus/
USER 65534:65534
WORKDIR /prometheus
LABEL org.regoauth.standin=true
EXPOSE 9090
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
EOF
  build "$PROMETHEUS_IMAGE" "$d"
fi
