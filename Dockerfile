# SKIN's TorchServe in a container: `make image` (CPU) or `make image GPU=1` (CUDA wheels); see the
# docs/deploy.md. Build it from the repository root after `make archive`.
# The base image by tag: no registry was reachable where this was written, so no digest could be
# read, and a made-up one would fail the build or, worse, pin nothing anyone checked. Pin it where
# Docker is: `docker buildx imagetools inspect python:3.11-slim-bookworm` prints the index digest;
# set PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:<that digest> here (docs/security.md).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

# CPU wheels by default. The GPU variant passes a CUDA index and TORCH_DEPS= (empty): its torch
# needs the CUDA runtime's wheels, which that index resolves; the node's driver comes in through
# the NVIDIA container toolkit.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_DEPS=--no-deps

RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
    && rm -rf /var/lib/apt/lists/*

# Two installs, two indexes, never both at once: with --extra-index-url pip takes the highest
# version of a name from any index, so a look-alike upload to either could stand in for the
# other's package. torch and torchvision come from PyTorch's index alone, at pyproject.toml's
# versions; everything else from PyPI alone, each wheel checked against its SHA-256.
COPY pyproject.toml requirements-serve.lock /tmp/requirements/
COPY tools/pins.py /tmp/requirements/tools/
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX}" ${TORCH_DEPS} \
        $(python /tmp/requirements/tools/pins.py serve torch torchvision) \
    && pip install --no-cache-dir --index-url https://pypi.org/simple --require-hashes --no-deps \
        -r /tmp/requirements/requirements-serve.lock \
    && rm -rf /tmp/requirements

# TorchServe and its workers never run as root; the user owns only its home, where TorchServe
# writes key_file.json and its logs.
RUN useradd --create-home --uid 10001 --user-group skin
WORKDIR /home/skin

COPY config.properties /home/skin/config.properties
# The build-time config generator, the health check, ops (docker exec) and the key rotation, with
# what they import: settings, the API client and the wire contract. Whole packages, so that a new
# module cannot be left behind; the handler's are inside the archive. ops register is left out:
# the image's model store is fixed at build time.
COPY settings.py /home/skin/settings.py
COPY api /home/skin/api/
COPY contract /home/skin/contract/
COPY ops /home/skin/ops/
COPY serve /home/skin/serve/
COPY tools /home/skin/tools/
COPY model_store/skin.mar /home/skin/model_store/skin.mar
RUN python -m tools.deploy_config container /home/skin/torchserve.properties

# No PYTHONPATH: TorchServe puts it ahead of an archive's own folder on its workers' path, where
# /home/skin/contract would hide the contract package the archive was built with. `python -m` run
# from the WORKDIR finds tools/, api/ and contract/ without it.
ENV PYTHONUNBUFFERED=1 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

USER skin
# The workflow API's own store, empty (config.properties, workflow_store).
RUN mkdir -m 700 /home/skin/workflow_store
# Inference and metrics only: management listens on the container's loopback, for ops through
# `docker exec` (docs/deploy.md).
EXPOSE 8080 8082

# /ping wants the inference key in TorchServe 0.12; the check reads it from the key file.
HEALTHCHECK --interval=30s --timeout=10s --start-period=180s --retries=3 \
    CMD ["python", "-m", "tools.healthcheck", "--url", "http://127.0.0.1:8080/ping", "--key-file", "/home/skin/key_file.json"]

ENTRYPOINT ["torchserve", "--start", "--foreground", "--ncs", "--ts-config", "/home/skin/torchserve.properties"]
