# The twin image: one binary for the operator, the TwinDataset Jobs and the RAG gateways
# (with llama.cpp in process for the embedded engine).
#   docker build -t ghcr.io/twin-operator/twin:0.1.0 .
FROM rust:1.95-slim-bookworm AS build
# llama.cpp (the gateway's embedded engine) builds with cmake, a C++ compiler and libclang.
# Unpinned: build tools of the build stage only (nothing of them ships), from the release the
# base image names.
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends cmake g++ libclang-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, so that source changes do not rebuild them.
COPY Cargo.toml Cargo.lock ./
# .cargo/config.toml builds llama.cpp for x86-64-v3, so the image runs on any such CPU.
COPY .cargo ./.cargo
# The workspace's other crate: the sentence encoder (small, built with the dependencies).
COPY crates ./crates
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked --bin twin \
    && rm -rf src
COPY src ./src
# The evaluation's control text: the trainer's package holds it, and `twin eval` embeds it.
COPY trainer/src/twin_trainer/control ./trainer/src/twin_trainer/control
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin twin

# distroless: no shell, no package manager; glibc and CA certificates only. Runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.source="https://github.com/twin-operator/twin-operator" \
      org.opencontainers.image.description="twin-operator: build, train and serve LLM Twins on Kubernetes" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /src/target/release/twin /usr/local/bin/twin
# llama.cpp's threads are OpenMP's.
COPY --from=build /usr/lib/x86_64-linux-gnu/libgomp.so.1 /usr/lib/x86_64-linux-gnu/libgomp.so.1
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/twin"]
CMD ["operator"]
