# syntax=docker/dockerfile:1
# The inference service: onnxruntime (GPU build by default) + FastAPI, no torch, non-root.
# CPU-only machines: compose.cpu.yaml builds it with BASE_IMAGE=ubuntu:24.04 and the CPU requirements.
ARG BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

FROM ${BASE_IMAGE} AS build
ARG REQUIREMENTS=docker/requirements-serve-gpu.txt
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3=3.12.* python3-venv=3.12.* \
    && rm -rf /var/lib/apt/lists/*
COPY ${REQUIREMENTS} /tmp/requirements.txt
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt

FROM ${BASE_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3=3.12.* curl=8.* \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 app
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# The service and the torch-free core it shares with training (the latent layout, the image helpers).
COPY infogan/ infogan/
COPY service/ service/
COPY models/ models/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8000 \
    MODEL_DIR=/app/models/mnist
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["curl", "-fsS", "http://127.0.0.1:8000/readyz"]
CMD ["python", "-m", "service"]
