# syntax=docker/dockerfile:1
# The Janus gateway as a small runtime image (see deploy/README and README "Running N gateways").
#
#   docker build -t janus:dev .
#   docker run --rm -v $PWD/configs:/etc/janus janus:dev --config /etc/janus/local.yaml
#
# Stage 1 builds the release binary with etcd discovery and OpenTelemetry export; stage 2 is
# distroless (glibc, CA certificates, a non-root user, no shell): ~25 MB plus the binary.
# `janus drain` (the Kubernetes preStop hook) is the same binary, so no curl is needed.

# The toolchain the workspace is developed and tested with.
FROM rust:1.95-bookworm AS build
# etcd-client generates its gRPC code with protoc.
RUN apt-get update \
    && apt-get install -y --no-install-recommends protobuf-compiler \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p janus-tokio --features etcd,otel --bin janus \
    && cp target/release/janus /janus

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=build /janus /usr/local/bin/janus
# Client TCP, client WebSocket, admin HTTP (metrics, probes, admin API), gRPC push service.
EXPOSE 7001 7002 8100 9100
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/janus"]
CMD ["--config", "/etc/janus/janus.yaml"]
