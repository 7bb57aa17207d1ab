# Shipday: multi-stage build, small non-root runtime image, the same binary as `cargo build`.
#
# Base images are pinned to exact tags (Rust 1.95.0 is what CI builds with; Debian 12's dated
# snapshot). Bump both on purpose, together with `rust-version` in Cargo.toml when it moves.
FROM rust:1.95.0-slim-bookworm AS build
WORKDIR /src
# Cargo strips the binary (no binutils needed); set before both builds so they share a profile.
ENV CARGO_PROFILE_RELEASE_STRIP=symbols

# Dependencies first, in their own layer: this layer is rebuilt only when the manifests, the
# lock file, a workspace member crate or the benches (declared in Cargo.toml) change, so a
# change under src/ rebuilds Shipday alone, not the ~450 crates below it.
COPY Cargo.toml Cargo.lock ./
COPY crates crates
COPY benches benches
RUN mkdir src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked --bin shipday \
 && rm -rf src target/release/shipday target/release/deps/shipday-* target/release/deps/libshipday-* \
           target/release/.fingerprint/shipday-*

# Shipday itself.
COPY src src
COPY commands commands
RUN cargo build --release --locked --bin shipday

FROM debian:bookworm-20260202-slim
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
# The one HTTP listener (`[server] listen`, default 0.0.0.0:3000): Slack's HTTP mode, Discord's
# interactions, GitHub's webhook and /healthz.
EXPOSE 3000
# Liveness: `shipday healthcheck` asks /healthz at the config's `[server] listen` (the image has
# no curl). Exit 0 healthy, 1 not.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 CMD ["shipday", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/shipday"]
CMD ["serve"]
