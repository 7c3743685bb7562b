# Berth in a container: one image for `berth server` and `berth agent`.
#   docker build -t berth:local .
# The build stage needs nothing beyond the Rust image: protoc is vendored.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p berth --bin berth

# The agent runs `ip` and `iptables` for Services; the server needs neither,
# and both fit in one slim image.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates iproute2 iptables \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/berth /usr/local/bin/berth
EXPOSE 8080 2379
ENTRYPOINT ["berth"]
CMD ["server", "--data-dir", "/var/lib/berth", "--http-addr", "0.0.0.0:8080", "--grpc-addr", "0.0.0.0:2379"]
