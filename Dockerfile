# syntax=docker/dockerfile:1
# warden agent image: the eBPF object is built in the build stage (nightly +
# rust-src + bpf-linker on LLVM 22, as scripts/setup.sh does) and embedded in
# the agent binary; the runtime stage holds that one binary.
#   docker build -t ghcr.io/warden-project/warden:0.1.0 .

FROM rust:1.95-bookworm AS build
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      llvm-22-dev libpolly-22-dev libzstd-dev zlib1g-dev clang-22 \
 && rm -rf /var/lib/apt/lists/*
RUN rustup toolchain install nightly --profile minimal --component rust-src \
 && LLVM_PREFIX=/usr/lib/llvm-22 cargo install bpf-linker --version 0.13.0 --locked \
      --no-default-features --features llvm-22
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p warden --bin warden \
 && install -D -m 0755 target/release/warden /out/warden

FROM debian:bookworm-slim
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/warden /usr/local/bin/warden
COPY config/policy.schema.json /usr/share/warden/policy.schema.json
# The agent never starts a shell or another program.
ENTRYPOINT ["/usr/local/bin/warden"]
CMD ["agent", "--config", "/etc/warden/policy.yaml"]
