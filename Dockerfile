# sluice: build with the Rust toolchain, run on a slim Debian.
#   docker build -t sluice .
#   docker run -p 6432:6432 -v $PWD/my.toml:/etc/sluice/sluice.toml sluice
# In a container, set listen = "0.0.0.0:6432" in the mounted config (the example listens on
# 127.0.0.1 only).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY proto ./proto
COPY src ./src
COPY tests ./tests
COPY bench ./bench
RUN cargo build --release --locked --bin sluice

FROM debian:bookworm-slim
RUN useradd --system --no-create-home --shell /usr/sbin/nologin sluice
COPY --from=build /src/target/release/sluice /usr/local/bin/sluice
COPY config/sluice.toml /etc/sluice/sluice.toml
USER sluice
EXPOSE 6432
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/sluice"]
CMD ["--config", "/etc/sluice/sluice.toml"]
