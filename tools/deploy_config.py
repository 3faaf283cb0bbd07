"""TorchServe configurations for the container image and for KServe, derived from config.properties.

    python -m tools.deploy_config container OUT   # what the Dockerfile runs at build time

Both start from the repository's config.properties, so every knob (request size, queue, keys'
lifetime, metrics) is set in one place; only what a container or a KServe pod needs differs.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

import settings
from serve.torchserve import PROTOCOL_OVERRIDES, read_properties, write_properties

CONTAINER_HOME = "/home/skin"
# Inside a container loopback is unreachable from outside, so inference and metrics listen on all
# interfaces. Management stays on the container's loopback, reached with `docker exec` (ops is in
# the image), and so does gRPC; neither is published. Token authorization stays on. TS_* variables
# may override keys (e.g. TS_SERVICE_ENVELOPE=kservev2 for the v2 protocol).
CONTAINER_OVERRIDES = {
    "inference_address": f"http://0.0.0.0:{settings.INFERENCE_PORT}",
    "management_address": f"http://{settings.LOOPBACK}:{settings.MANAGEMENT_PORT}",
    "metrics_address": f"http://0.0.0.0:{settings.METRICS_PORT}",
    "model_store": f"{CONTAINER_HOME}/model_store",
    "enable_envvars_config": "true",
}

# KServe's TorchServe runtime mounts the bundle at /mnt/models and runs its own front (the KServe
# wrapper) on :8080, which forwards to TorchServe on :8085 of the same container and finds the
# models in model_snapshot. The wrapper cannot send TorchServe keys (pytorch/serve#3301), so token
# authorization is off and TorchServe listens on loopback only, where nothing but the wrapper
# reaches it; the cluster's ingress authenticates clients instead. Metrics stay open on :8082 for
# Prometheus. The model API stays off: the pod serves the one model of its bundle.
KSERVE_STORAGE = "/mnt/models"
KSERVE_INFERENCE_PORT = settings.BEHIND_FRONT_PORT
KSERVE_OVERRIDES = {
    "inference_address": f"http://{settings.LOOPBACK}:{KSERVE_INFERENCE_PORT}",
    "management_address": f"http://{settings.LOOPBACK}:{KSERVE_INFERENCE_PORT}",
    "metrics_address": f"http://0.0.0.0:{settings.METRICS_PORT}",
    "model_store": f"{KSERVE_STORAGE}/model-store",
    "disable_token_authorization": "true",
    "enable_model_api": "false",
    # The bundle ships no such folder (object stores keep none empty): nothing for workflows.
    "workflow_store": f"{KSERVE_STORAGE}/workflow-store",
    "enable_envvars_config": "true",
    **PROTOCOL_OVERRIDES["v2"],
}
# The snapshot loads the model; load_models beside it would register it twice.
KSERVE_DROPPED = ("load_models",)


def container_properties(base: Path = settings.TORCHSERVE_CONFIG) -> dict[str, str]:
    return {**read_properties(base), **CONTAINER_OVERRIDES}


def model_snapshot(model: str, version: str, archive_name: str, model_config: Path) -> str:
    """The model_snapshot line that KServe's wrapper and TorchServe read the model from; workers and
    batching come from the archive's model-config.yaml, which the snapshot would otherwise override."""
    config = yaml.safe_load(model_config.read_text())
    registered = {"defaultVersion": True, "marName": archive_name,
                **{key: config[key] for key in ("minWorkers", "maxWorkers", "batchSize",
                                                "maxBatchDelay", "responseTimeout")}}
    return json.dumps({"name": "startup.cfg", "modelCount": 1,
                       "models": {model: {version: registered}}}, separators=(",", ":"))


def kserve_properties(snapshot: str, base: Path = settings.TORCHSERVE_CONFIG) -> dict[str, str]:
    properties = {key: value for key, value in read_properties(base).items()
                  if key not in KSERVE_DROPPED}
    return {**properties, **KSERVE_OVERRIDES, "model_snapshot": snapshot}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", choices=["container"])
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    write_properties(container_properties(), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
