# syntax=docker/dockerfile:1
# The operator's image, for builders with a container engine:
#
#   docker build -t ghcr.io/backfill-dev/backfill-operator:0.2.0 .
#
# The binary is linked statically (glibc, crt-static; TLS is rustls), so
# the image holds it and nothing else. `make image` builds the same binary,
# entrypoint and user without a container engine.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    binary=$(bash hack/image.sh binary) && cp "$binary" /backfill-operator

FROM scratch
COPY --from=build /backfill-operator /backfill-operator
USER 65532:65532
ENTRYPOINT ["/backfill-operator"]
LABEL org.opencontainers.image.title="backfill-operator" \
      org.opencontainers.image.description="A Kubernetes operator that runs batch Jobs on a schedule and re-runs past schedule slots as declarative Backfills" \
      org.opencontainers.image.licenses="Apache-2.0"
