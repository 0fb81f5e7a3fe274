#!/usr/bin/env bash
# docker/podman-build.sh cpu|gpu: build the service image with podman where no base image can be pulled.
#   cpu -> the tag compose.cpu.yaml runs (CPU onnxruntime); gpu -> the tag compose.yaml runs (onnxruntime-gpu
#   with NVIDIA's CUDA/cuDNN wheels). The base is Debian 12, built once from Debian's packages with debootstrap
#   and kept as localhost/debian-base:bookworm; set BASE_IMAGE (and PYTHON_VERSION) to build on another base.
set -euo pipefail
cd "$(dirname "$0")/.."
variant=${1:?usage: docker/podman-build.sh cpu|gpu}
case $variant in
    cpu) compose_file=compose.cpu.yaml; requirements=docker/requirements-serve-cpu.txt ;;
    gpu) compose_file=compose.yaml; requirements=docker/requirements-serve-gpu.txt ;;
    *) echo "docker/podman-build.sh: unknown variant '$variant' (cpu or gpu)" >&2; exit 2 ;;
esac
command -v podman >/dev/null || { echo "podman is not installed (make container-deps)" >&2; exit 2; }
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/docker/podman/containers.conf}
image=$(sed -n 's/^ *image: *//p' "$compose_file" | head -n 1)  # the api service's image, as compose names it

base=${BASE_IMAGE:-localhost/debian-base:bookworm}
python_version=${PYTHON_VERSION:-3.11}
if [ -z "${BASE_IMAGE:-}" ] && ! podman image exists "$base"; then
    command -v debootstrap >/dev/null || { echo "debootstrap is not installed (make container-deps)" >&2; exit 2; }
    rootfs=$(mktemp -d)
    trap 'rm -rf "$rootfs"' EXIT
    echo "building $base from Debian's packages (debootstrap, about a minute)" >&2
    debootstrap --variant=minbase bookworm "$rootfs" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >/dev/null
    tar -C "$rootfs" -c . | podman import --quiet - "$base" >/dev/null
fi

# Builds reach the package registries through the host's network and trust its CA bundle (a TLS-inspecting
# proxy's certificate lives there); neither ends up in the image.
args=(--network host --format docker -f docker/service.Dockerfile -t "$image"
      --build-arg "BASE_IMAGE=$base" --build-arg "PYTHON_VERSION=$python_version"
      --build-arg "REQUIREMENTS=$requirements")
ca_bundle=/etc/ssl/certs/ca-certificates.crt
if [ -f "$ca_bundle" ]; then
    args+=(--volume "$ca_bundle:/run/host-ca.crt:ro" --build-arg PIP_CERT=/run/host-ca.crt)
fi
echo "building $image ($variant) on $base" >&2
podman build "${args[@]}" . >&2  # the build's log on stderr; stdout is only the tag, for scripts
echo "$image"
