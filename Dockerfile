# The regoauth image: one static binary, the CA certificates it needs for rediss:// and HTTPS
# bundle servers, and nothing else (no shell, no package manager), running as an unprivileged
# numeric user.
#
#   docker build -t regoauth .        compiles from source in a golang stage (the usual way)
#   make image                        compiles here and packs the result with --target prebuilt,
#                                     for a machine whose Docker Engine can pull no base image
#
# Both produce the same image: the settings live once, in the `runtime` stage, and the two
# variants differ only in where the files come from. The prebuilt stage comes before the golang
# stage on purpose: builders that run every stage up to the target (the classic builder) never
# reach the golang stage when asked for `prebuilt`.
ARG GO_VERSION=1.26

# runtime: the image's settings, no files.
FROM scratch AS runtime
ENV PATH=/usr/local/bin
# 65532 is the conventional "nonroot" id of distroless images; no /etc/passwd entry is needed.
USER 65532:65532
# 5001: tokens, admin API, /healthz, /readyz, /metrics (or metrics on 9091 with metrics.addr).
EXPOSE 5001 9091
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/regoauth", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/regoauth"]
CMD ["serve", "--config", "/etc/regoauth/regoauth.yaml"]
ARG VERSION=dev
LABEL org.opencontainers.image.title="regoauth" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.description="Token server for private container registries, with Rego policies" \
      org.opencontainers.image.licenses="Apache-2.0"

# prebuilt: the files `make image` prepared in bin/image (see the Makefile).
FROM runtime AS prebuilt
COPY bin/image/rootfs/ /
COPY --chown=65532:65532 bin/image/data/regoauth/ /var/lib/regoauth/
COPY --chown=65532:65532 bin/image/data/regoauth-public/ /var/lib/regoauth-public/

# build: compile from source.
FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# Keep these flags and folders the same as the Makefile's image target.
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
        -o /out/rootfs/usr/local/bin/regoauth ./cmd/regoauth \
 && mkdir -p /out/rootfs/etc/ssl/certs /out/rootfs/tmp /out/rootfs/var/lib /out/data/regoauth /out/data/regoauth-public \
 && cp /etc/ssl/certs/ca-certificates.crt /out/rootfs/etc/ssl/certs/ \
 && chmod 1777 /out/rootfs/tmp

# image (the default target): the compiled files over the runtime settings.
FROM runtime AS image
COPY --from=build /out/rootfs/ /
COPY --from=build --chown=65532:65532 /out/data/regoauth/ /var/lib/regoauth/
COPY --from=build --chown=65532:65532 /out/data/regoauth-public/ /var/lib/regoauth-public/
