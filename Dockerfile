# Shipday: multi-stage build, small non-root runtime image, the same binary as `cargo build`.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
# The workspace members (the test harness and test attribute; cargo loads every member).
COPY crates crates
COPY src src
COPY commands commands
COPY benches benches
RUN cargo build --release --locked --bin shipday && strip target/release/shipday

FROM debian:bookworm-slim
# git: resolving refs for the local transport; openssh-client: ssh-keyscan for pinning host keys.
RUN apt-get update \
 && apt-get install -y --no-install-recommends git openssh-client ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --create-home --home-dir /var/lib/shipday --shell /usr/sbin/nologin shipday
COPY --from=build /src/target/release/shipday /usr/local/bin/shipday
USER shipday
WORKDIR /var/lib/shipday
# Mount the config (and key files) at /etc/shipday and keep state_dir on this volume.
VOLUME /var/lib/shipday
ENV SHIPDAY_CONFIG=/etc/shipday/shipday.toml
ENTRYPOINT ["/usr/local/bin/shipday"]
CMD ["serve"]
