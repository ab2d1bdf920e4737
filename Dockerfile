# syntax=docker/dockerfile:1
#
# One image for both node components:
#   /usr/bin/sriov-device-plugin   the device-plugin daemon (DaemonSet sriov-device-plugin)
#   /usr/bin/sriov                 the CNI plugin, copied to the host's /opt/cni/bin
#   /usr/bin/install-cni.sh        that copy (DaemonSet sriov-cni)
#   /usr/bin/dpdk-launcher.sh      EAL allow-list helper for DPDK pods
#
# Multi-arch: the binaries are built on the host first, for both platforms, by cross-compiling
# (no compiler runs under emulation, no builder stage):
#   scripts/build-release.sh        # target/dist/{amd64,arm64}/{sriov,sriov-device-plugin}
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/sriov-network:TAG --push .
# Each platform's image COPYs target/dist/$TARGETARCH (set by buildx). The only step that runs
# per platform is the apt-get below, which buildx runs under QEMU binfmt for the foreign one.
# sriov is musl on both platforms, the amd64 device plugin glibc crt-static; all are static,
# because `sriov` runs on the host, not in this image, and must not depend on the host's libc.

ARG DEBIAN_RELEASE=bookworm

FROM docker.io/library/debian:${DEBIAN_RELEASE}-slim
LABEL org.opencontainers.image.title="sriov-network" \
      org.opencontainers.image.description="SR-IOV device plugin and sriov CNI plugin for Kubernetes" \
      org.opencontainers.image.licenses="Apache-2.0"
# A shell is needed by the CNI installer and the DPDK launcher (jq makes the launcher read
# the device info JSON exactly; it falls back to a plain-text parse without it).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends jq \
 && rm -rf /var/lib/apt/lists/*
# Set by buildx per platform (amd64, arm64).
ARG TARGETARCH
COPY target/dist/${TARGETARCH}/sriov-device-plugin target/dist/${TARGETARCH}/sriov /usr/bin/
COPY --chmod=0755 deploy/install-cni.sh deploy/dpdk-launcher.sh /usr/bin/
# The image runs as root. The device plugin cannot run unprivileged on a real node: it writes
# root-only sysfs attributes (sriov_numvfs, driver_override, bind/unbind), changes host
# interfaces over netlink and creates sockets in the kubelet's root-owned directories; the
# DaemonSet runs it as a privileged container (see deploy/sriov-device-plugin.yaml). The CNI
# installer needs root only to write the host's /opt/cni/bin and drops every capability.
USER 0:0
ENTRYPOINT ["/usr/bin/sriov-device-plugin"]
