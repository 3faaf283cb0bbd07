# SKIN's TorchServe in a container: `make image` (CPU) or `make image GPU=1` (CUDA wheels); see the
# README, "Deploying beyond one machine". Build it from the repository root after `make archive`.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

# CPU wheels by default. The GPU variant passes a CUDA index: those wheels bring the CUDA runtime,
# and the node's driver comes in through the NVIDIA container toolkit.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
    && rm -rf /var/lib/apt/lists/*

COPY requirements.txt requirements-serve.txt /tmp/requirements/
RUN pip install --no-cache-dir --extra-index-url "${TORCH_INDEX}" \
        -r /tmp/requirements/requirements-serve.txt \
    && rm -rf /tmp/requirements

# TorchServe and its workers never run as root; the user owns only its home, where TorchServe
# writes key_file.json and its logs.
RUN useradd --create-home --uid 10001 --user-group skin
WORKDIR /home/skin

COPY config.properties /home/skin/config.properties
COPY tools/__init__.py tools/torchserve.py tools/deploy_config.py tools/healthcheck.py /home/skin/tools/
COPY model_store/skin.mar /home/skin/model_store/skin.mar
RUN python -m tools.deploy_config container /home/skin/torchserve.properties

ENV PYTHONPATH=/home/skin \
    PYTHONUNBUFFERED=1 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

USER skin
EXPOSE 8080 8081 8082

# /ping wants the inference key in TorchServe 0.12; the check reads it from the key file.
HEALTHCHECK --interval=30s --timeout=10s --start-period=180s --retries=3 \
    CMD ["python", "-m", "tools.healthcheck", "--url", "http://127.0.0.1:8080/ping", "--key-file", "/home/skin/key_file.json"]

ENTRYPOINT ["torchserve", "--start", "--foreground", "--ncs", "--ts-config", "/home/skin/torchserve.properties"]
