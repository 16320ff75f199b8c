# syntax=docker/dockerfile:1
# sluice: built with the Rust toolchain, run on Debian slim as an unprivileged user.
#   docker build -t sluice .
#   docker run -p 6432:6432 -p 9930:9930 -v "$PWD/my.toml:/etc/sluice/sluice.toml:ro" sluice
# The mounted file must listen on 0.0.0.0 (config/sluice.toml's example listens on 127.0.0.1
# only) and keep metrics_listen, which the HEALTHCHECK asks. Environment overrides, docker stop
# and the Kubernetes manifests: deploy/README.md.

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Only what the build reads: the manifests, the two crates' sources. tests/ and bench/ are not
# needed for `cargo build --bin sluice` and would only spoil the layer cache.
COPY Cargo.toml Cargo.lock ./
COPY proto ./proto
COPY src ./src
# The cache mounts keep the registry and compiled dependencies between builds (BuildKit).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin sluice \
    && install -D -m 0755 target/release/sluice /out/sluice

FROM debian:bookworm-slim
# A fixed numeric uid, so Kubernetes' runAsNonRoot can check it without a passwd lookup.
RUN groupadd --system --gid 10001 sluice \
    && useradd --system --uid 10001 --gid sluice --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin sluice
COPY --from=build /out/sluice /usr/local/bin/sluice
COPY deploy/docker/sluice.toml /etc/sluice/sluice.toml
# SLUICE_LOG: the log filter (info, debug, sluice=debug,...). The [pooler] keys and the log
# format have SLUICE_... overrides too (deploy/README.md, "Environment").
ENV SLUICE_LOG=info
USER 10001:10001
EXPOSE 6432 9930
# /healthz on the config's metrics_listen, by the sluice binary itself: the slim image has no
# curl or wget, and installing one for a health check would double what the image carries.
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/sluice", "--config", "/etc/sluice/sluice.toml", "healthcheck"]
# SIGTERM: stop accepting, serve connected clients until they leave (shutdown_timeout, then 5 s
# more). Give `docker stop -t` / stop_grace_period at least shutdown_timeout + 10 s.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/sluice"]
CMD ["--config", "/etc/sluice/sluice.toml"]
