# The official Rust image's layout, built from Debian's packages and a local toolchain
# (deploy/images/build.sh copies the toolchain into the build context as `toolchain/`).
FROM debian:bookworm-slim
ARG RUST_VERSION
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        gcc libc6-dev ca-certificates >/dev/null \
 && rm -rf /var/lib/apt/lists/*
ENV RUSTUP_HOME=/usr/local/rustup \
    CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    RUST_VERSION=${RUST_VERSION}
COPY ca-certificates /usr/local/share/ca-certificates
RUN update-ca-certificates >/dev/null
COPY toolchain /usr/local/rustup/toolchains/${RUST_VERSION}-x86_64-unknown-linux-gnu
RUN mkdir -p /usr/local/cargo/bin \
 && for tool in cargo rustc rustdoc; do \
        ln -s "/usr/local/rustup/toolchains/${RUST_VERSION}-x86_64-unknown-linux-gnu/bin/$tool" /usr/local/cargo/bin/; \
    done \
 && cargo --version && rustc --version
