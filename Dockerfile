# syntax=docker/dockerfile:1
#
# One image for both node components:
#   /usr/bin/sriov-device-plugin   the device-plugin daemon (DaemonSet sriov-device-plugin)
#   /usr/bin/sriov                 the CNI plugin, copied to the host's /opt/cni/bin
#   /usr/bin/install-cni.sh        that copy (DaemonSet sriov-cni)
#   /usr/bin/dpdk-launcher.sh      EAL allow-list helper for DPDK pods
#
# Multi-arch:
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/sriov-network:TAG --push .
# The builder stage runs once per target platform (natively on a builder node of that
# architecture, or under QEMU binfmt emulation, which is much slower); no cross toolchain.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM docker.io/library/rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
# Set by buildx per platform; keeps one cargo target cache per architecture.
ARG TARGETARCH
WORKDIR /src
COPY . .
# Both binaries are linked statically (glibc crt-static): the `sriov` binary runs on the host,
# not in this image, and must not depend on the host's glibc version (Ubuntu 20.04, RHEL 8
# and other nodes ship older ones than bookworm). --target is given so that the static flag
# applies to the binaries only, not to build scripts and proc-macros.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,id=sriov-target-${TARGETARCH} \
    set -eux; \
    host="$(rustc -vV | sed -n 's/^host: //p')"; \
    RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --target "$host" -p sriov-device-plugin -p sriov-cni; \
    mkdir -p /out; \
    cp "target/$host/release/sriov-device-plugin" "target/$host/release/sriov" /out/

FROM docker.io/library/debian:${DEBIAN_RELEASE}-slim
LABEL org.opencontainers.image.title="sriov-network" \
      org.opencontainers.image.description="SR-IOV device plugin and sriov CNI plugin for Kubernetes" \
      org.opencontainers.image.licenses="Apache-2.0"
# A shell is needed by the CNI installer and the DPDK launcher (jq makes the launcher read
# the device info JSON exactly; it falls back to a plain-text parse without it).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends jq \
 && rm -rf /var/lib/apt/lists/*
COPY --from=builder /out/sriov-device-plugin /out/sriov /usr/bin/
COPY --chmod=0755 deploy/install-cni.sh deploy/dpdk-launcher.sh /usr/bin/
# The image runs as root. The device plugin cannot run unprivileged on a real node: it writes
# root-only sysfs attributes (sriov_numvfs, driver_override, bind/unbind), changes host
# interfaces over netlink and creates sockets in the kubelet's root-owned directories; the
# DaemonSet runs it as a privileged container (see deploy/sriov-device-plugin.yaml). The CNI
# installer needs root only to write the host's /opt/cni/bin and drops every capability.
USER 0:0
ENTRYPOINT ["/usr/bin/sriov-device-plugin"]
