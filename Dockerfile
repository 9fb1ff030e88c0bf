# The twin image: one binary for the operator, the TwinDataset Jobs and the RAG gateways.
#   docker build -t ghcr.io/twin-operator/twin:0.1.0 .
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Dependencies first, so that source changes do not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked --bin twin \
    && rm -rf src
COPY src ./src
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin twin

# distroless: no shell, no package manager; glibc and CA certificates only. Runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.source="https://github.com/twin-operator/twin-operator" \
      org.opencontainers.image.description="twin-operator: build, train and serve LLM Twins on Kubernetes" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /src/target/release/twin /usr/local/bin/twin
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/twin"]
CMD ["operator"]
