# syntax=docker/dockerfile:1
# The inference service: onnxruntime + FastAPI, no torch, non-root, on a plain Ubuntu (or Debian) base.
# GPU (default): onnxruntime-gpu (built for CUDA 12) with CUDA 12 and cuDNN 9 from NVIDIA's own wheels, pinned in
# the requirements, so no nvidia/cuda base image is needed; the host's driver comes in at run time.
# CPU: compose.cpu.yaml builds it with the CPU requirements. Without registry access (podman on Debian):
# docker/podman-build.sh builds the base with debootstrap and passes BASE_IMAGE and PYTHON_VERSION.
ARG BASE_IMAGE=ubuntu:24.04

FROM ${BASE_IMAGE} AS build
# The base's python3 minor version (Ubuntu 24.04: 3.12, Debian 12: 3.11).
ARG PYTHON_VERSION=3.12
ARG REQUIREMENTS=docker/requirements-serve-gpu.txt
# Behind a TLS-inspecting proxy: pass the CA bundle's path (mounted into the build) as PIP_CERT.
ARG PIP_CERT
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3=${PYTHON_VERSION}.* python3-venv=${PYTHON_VERSION}.* \
    && rm -rf /var/lib/apt/lists/*
COPY ${REQUIREMENTS} /tmp/requirements.txt
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt

FROM ${BASE_IMAGE}
ARG PYTHON_VERSION=3.12
COPY --from=build /opt/venv /opt/venv
# The CUDA/cuDNN wheels' libraries join the loader's path (none in the CPU image: the file stays empty).
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3=${PYTHON_VERSION}.* \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 app \
    && find /opt/venv -path '*/site-packages/nvidia/*/lib' -type d > /etc/ld.so.conf.d/nvidia-wheels.conf \
    && ldconfig
WORKDIR /app
# The service and the torch-free core it shares with training (the latent layout, the image helpers).
COPY infogan/ infogan/
COPY service/ service/
COPY models/ models/
# NVIDIA_DRIVER_CAPABILITIES: what the NVIDIA container toolkit mounts from the host driver (the nvidia/cuda
# images set it; a plain base must). Ignored where there is no toolkit, as in the CPU image.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    HOST=0.0.0.0 \
    PORT=8000 \
    MODEL_REPOSITORY=/app/models \
    DEFAULT_MODEL=mnist
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-m", "service.healthcheck"]
CMD ["python", "-m", "service"]
