# syntax=docker/dockerfile:1
# Training and export on the GPU: PyTorch with CUDA. Runs `make model`-style jobs into mounted volumes.
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3=3.12.* python3-venv=3.12.* \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 app \
    && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cu128 torch==2.9.1
COPY docker/requirements-train.txt /tmp/requirements.txt
RUN pip install --no-cache-dir -r /tmp/requirements.txt
WORKDIR /app
COPY training/ training/
COPY export/ export/
USER 10001
CMD ["python", "-m", "training", "--help"]
