"""deploy/kserve/: the manifests parse and carry what KServe's v1beta1 InferenceService schema
requires, agree with the bundle's configuration, and `make kserve-bundle` lays out what storageUri
must hold; a real TorchServe then serves v2 from that bundle's configuration."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests
import yaml

import settings
from contract import v2
from contract.checks import check_prediction
from serve.torchserve import ADDRESS_KEYS, GRPC_PORT_KEYS, TorchServe, read_properties
from tools.archive import DEFAULT_CONFIG
from tools.deploy_config import KSERVE_INFERENCE_PORT, KSERVE_STORAGE
from tools.kserve_bundle import ARCHIVE_DIR, CONFIG_PATH, NotABundleError, archive_manifest, write_bundle

KSERVE_DIR = settings.REPO / "deploy" / "kserve"
SERVICES = {"skin-cpu.yaml": DEFAULT_CONFIG, "skin-gpu.yaml": settings.REPO / "bench" / "gpu-model-config.yaml"}
DNS_1123 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
SCALE_METRICS = {"cpu", "memory", "concurrency", "rps"}
# docs/benchmarks.md, soak: each CPU worker ~960 MB resident.
WORKER_RSS_MIB = 960


def documents(name: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all((KSERVE_DIR / name).read_text()) if doc]


def service(name: str) -> dict:
    [isvc] = documents(name)
    return isvc


def quantity(value: str) -> float:
    """A Kubernetes quantity (cores or bytes) as a number."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "m": 1e-3}
    for suffix, factor in units.items():
        if str(value).endswith(suffix):
            return float(str(value)[: -len(suffix)]) * factor
    return float(value)


@pytest.fixture(scope="module")
def bundles(model_store, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("kserve-bundles")
    return {name: write_bundle(out / name, model_store / "skin.mar", config)
            for name, config in SERVICES.items()}


def test_every_manifest_parses_and_names_its_kind():
    names = sorted(path.name for path in KSERVE_DIR.glob("*.yaml"))
    assert set(SERVICES) <= set(names)
    for name in names:
        for doc in documents(name):
            assert doc["apiVersion"] and doc["kind"] and DNS_1123.match(doc["metadata"]["name"])


@pytest.mark.parametrize("name", SERVICES)
def test_inference_service_has_what_v1beta1_requires(name):
    isvc = service(name)
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1" and isvc["kind"] == "InferenceService"
    predictor = isvc["spec"]["predictor"]
    model = predictor["model"]
    assert model["modelFormat"]["name"] == "pytorch"
    assert model["protocolVersion"] == "v2"
    assert model["runtime"] == "kserve-torchserve"
    assert urlparse(model["storageUri"]).scheme in {"s3", "gs", "pvc", "https", "hdfs", "oci"}
    assert 1 <= predictor["minReplicas"] <= predictor["maxReplicas"]
    assert predictor["scaleMetric"] in SCALE_METRICS
    assert isinstance(predictor["scaleTarget"], int) and predictor["scaleTarget"] > 0
    resources = model["resources"]
    for resource, request in resources["requests"].items():
        assert quantity(request) <= quantity(resources["limits"][resource]), resource


@pytest.mark.parametrize("name", SERVICES)
def test_scale_target_leaves_headroom_below_the_requests_a_replica_holds(name):
    config = yaml.safe_load(SERVICES[name].read_text())
    in_flight = config["maxWorkers"] * config["batchSize"]
    assert service(name)["spec"]["predictor"]["scaleTarget"] < in_flight


@pytest.mark.parametrize("name", SERVICES)
def test_a_pod_takes_no_more_requests_than_its_batches_and_queue_hold(name, bundles):
    config = yaml.safe_load(SERVICES[name].read_text())
    properties = read_properties(bundles[name] / CONFIG_PATH)
    held = config["maxWorkers"] * config["batchSize"] + int(properties["job_queue_size"])
    assert service(name)["spec"]["predictor"]["containerConcurrency"] == held


def test_the_cpu_pods_requests_fit_in_the_heap():
    properties = read_properties(settings.TORCHSERVE_CONFIG)
    concurrency = service("skin-cpu.yaml")["spec"]["predictor"]["containerConcurrency"]
    heap = int(re.search(r"-Xmx(\d+)g", properties["vmargs"]).group(1)) * 2**30
    assert concurrency * int(properties["max_request_size"]) <= heap


def test_cpu_requests_follow_the_benchmarked_set_up():
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    requests_ = service("skin-cpu.yaml")["spec"]["predictor"]["model"]["resources"]["requests"]
    # The benchmark's winner is one torch thread per worker, one core each.
    assert quantity(requests_["cpu"]) == config["maxWorkers"]
    assert quantity(requests_["memory"]) >= config["maxWorkers"] * WORKER_RSS_MIB * 2**20


def test_gpu_service_asks_for_a_gpu_and_the_gpu_runtime():
    model = service("skin-gpu.yaml")["spec"]["predictor"]["model"]
    assert model["runtimeVersion"].endswith("-gpu")
    assert quantity(model["resources"]["limits"]["nvidia.com/gpu"]) == 1


@pytest.mark.parametrize("name", SERVICES)
def test_readiness_pings_torchserve_where_the_bundle_config_listens(name, bundles):
    properties = read_properties(bundles[name] / CONFIG_PATH)
    probe = service(name)["spec"]["predictor"]["model"]["readinessProbe"]
    command = " ".join(probe["exec"]["command"])
    address = urlparse(properties["inference_address"])
    assert f"http://{address.hostname}:{address.port}/ping" in command
    assert address.port == KSERVE_INFERENCE_PORT and address.hostname == "127.0.0.1"


@pytest.mark.parametrize("name", SERVICES)
def test_prometheus_annotations_name_the_metrics_port(name, bundles):
    annotations = service(name)["metadata"]["annotations"]
    port = str(urlparse(read_properties(bundles[name] / CONFIG_PATH)["metrics_address"]).port)
    assert annotations["prometheus.kserve.io/port"] == annotations["prometheus.io/port"] == port == "8082"
    assert annotations["serving.kserve.io/enable-prometheus-scraping"] == "true"
    assert annotations["prometheus.io/scrape"] == "true"


def test_ingress_auth_selects_the_services_pods():
    labels = {service(name)["metadata"]["labels"]["app.kubernetes.io/name"] for name in SERVICES}
    kinds = set()
    for doc in documents("ingress-auth.yaml"):
        kinds.add(doc["kind"])
        selector = doc["spec"].get("selector") or doc["spec"]["podSelector"]
        assert selector["matchLabels"]["app.kubernetes.io/name"] in labels
    assert kinds == {"RequestAuthentication", "AuthorizationPolicy", "NetworkPolicy"}


def ingress_auth(kind: str) -> dict:
    [doc] = [doc for doc in documents("ingress-auth.yaml") if doc["kind"] == kind]
    return doc


METRICS_OPERATION = {"ports": ["8082"], "methods": ["GET"], "paths": ["/metrics"]}


def test_a_token_must_name_skin_as_audience_and_carry_a_claim_condition():
    [rule] = ingress_auth("RequestAuthentication")["spec"]["jwtRules"]
    assert urlparse(rule["issuer"]).scheme == "https" and rule["audiences"]
    policy = ingress_auth("AuthorizationPolicy")["spec"]
    assert policy["action"] == "ALLOW"
    for allowed in policy["rules"]:
        if "from" not in allowed:  # Prometheus: GET /metrics on :8082, and nothing else
            assert [to["operation"] for to in allowed["to"]] == [METRICS_OPERATION]
            continue
        principals = [p for source in allowed["from"] for p in source["source"]["requestPrincipals"]]
        assert principals and all(p.startswith(rule["issuer"]) for p in principals), principals
        conditions = {condition["key"]: condition["values"] for condition in allowed["when"]}
        assert conditions["request.auth.audiences"] == rule["audiences"]
        assert any(key.startswith("request.auth.claims[") for key in conditions)


def test_only_the_gateway_knative_and_prometheus_reach_the_pods():
    policy = ingress_auth("NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    sources: dict[int, set[str]] = {}
    for rule in policy["ingress"]:
        assert rule["from"] and rule["ports"], "a rule without sources or ports admits everyone"
        namespaces = {source["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                      for source in rule["from"]}
        for port in rule["ports"]:
            sources.setdefault(port["port"], set()).update(namespaces)
    assert sources[8082] == {"monitoring"}
    assert set(sources) == {8012, 9090, 9091, 8082}
    assert "monitoring" not in sources[8012]


@pytest.mark.parametrize("name", SERVICES)
def test_the_pods_run_unprivileged_on_a_read_only_root_without_an_api_token(name):
    predictor = service(name)["spec"]["predictor"]
    assert predictor["automountServiceAccountToken"] is False
    assert predictor["securityContext"]["runAsNonRoot"] is True
    assert predictor["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = predictor["model"]["securityContext"]
    assert container["runAsNonRoot"] is True and container["runAsUser"] != 0
    assert container["readOnlyRootFilesystem"] is True
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"]["drop"] == ["ALL"]
    assert container["seccompProfile"] == {"type": "RuntimeDefault"}
    volumes = {volume["name"] for volume in predictor["volumes"] if "emptyDir" in volume}
    mounts = {mount["mountPath"]: mount["name"] for mount in predictor["model"]["volumeMounts"]}
    assert "/tmp" in mounts and set(mounts.values()) <= volumes


@pytest.mark.parametrize("name", SERVICES)
def test_bundle_layout_is_what_storage_uri_must_hold(name, bundles):
    bundle = bundles[name]
    assert sorted(str(p.relative_to(bundle)) for p in bundle.rglob("*") if p.is_file()) == \
        sorted([str(CONFIG_PATH), str(ARCHIVE_DIR / "skin.mar")])
    properties = read_properties(bundle / CONFIG_PATH)
    assert properties["model_store"] == f"{KSERVE_STORAGE}/{ARCHIVE_DIR}"
    assert properties["service_envelope"] == "kservev2"
    assert properties["disable_token_authorization"] == "true"
    assert "load_models" not in properties
    # The workflow API's store is a folder the bundle does not hold: nothing to load from it.
    assert properties["workflow_store"].startswith(KSERVE_STORAGE + "/")
    assert not (bundle / Path(properties["workflow_store"]).relative_to(KSERVE_STORAGE)).exists()
    snapshot = json.loads(properties["model_snapshot"])
    manifest = archive_manifest(bundle / ARCHIVE_DIR / "skin.mar")
    [(model, versions)] = snapshot["models"].items()
    [(version, registered)] = versions.items()
    assert (model, version) == (manifest["modelName"], manifest["modelVersion"])
    assert (bundle / ARCHIVE_DIR / registered["marName"]).is_file()
    config = yaml.safe_load(SERVICES[name].read_text())
    assert registered["batchSize"] == config["batchSize"]
    assert registered["maxWorkers"] == config["maxWorkers"]
    base = read_properties(settings.TORCHSERVE_CONFIG)
    assert properties["max_request_size"] == base["max_request_size"]


def test_torchserve_serves_v2_without_keys_from_the_bundle_config(bundles, tmp_path,
                                                                 fixture_images):
    """The CPU bundle's own configuration (snapshot, envelope, no token authorization) on a real
    TorchServe; only the addresses and the store's path are this machine's."""
    bundle = bundles["skin-cpu.yaml"]
    here = {*ADDRESS_KEYS.values(), *GRPC_PORT_KEYS.values(), "model_store"}
    properties = {key: value for key, value in read_properties(bundle / CONFIG_PATH).items()
                  if key not in here}
    # The snapshot stands in for load_models, as it does in the pod.
    server = TorchServe.on_free_ports(tmp_path / "ts", model_store=bundle / ARCHIVE_DIR, models="",
                                      overrides=properties, protocol="v2")
    server.start()
    try:
        answer = None
        for _ in range(360):
            try:
                answer = requests.post(server.inference_url(), timeout=30,
                                       json=v2.request(fixture_images["NV_ISIC_0024306.jpg"]))
            except requests.ConnectionError:
                answer = None
            if answer is not None and answer.status_code == 200:
                break
            assert server.process.poll() is None, f"TorchServe exited; see {server.home}/logs"
            time.sleep(0.5)
        assert answer is not None and answer.status_code == 200, answer and answer.text
        check_prediction(v2.answer_from_response(answer.json()))
        assert not server.key_file.exists(), "token authorization should be off in the bundle"
        assert requests.get(f"{server.url('inference')}/ping", timeout=10).json()["status"] == "Healthy"
    finally:
        server.stop()


def test_the_bundle_replaces_only_an_old_bundle_or_an_empty_folder(model_store, tmp_path):
    archive = model_store / "skin.mar"
    old = write_bundle(tmp_path / "bundle", archive)
    (old / ARCHIVE_DIR / "skin-0.9.mar").write_bytes(b"an older archive")
    assert write_bundle(old, archive) == old and not (old / ARCHIVE_DIR / "skin-0.9.mar").exists()
    (tmp_path / "empty").mkdir()
    write_bundle(tmp_path / "empty", archive)
    home = tmp_path / "home"
    (home / "model-store").mkdir(parents=True)
    (home / "notes.txt").write_text("keep me")
    (tmp_path / "file").write_text("keep me too")
    linked = write_bundle(tmp_path / "linked", archive)
    (linked / ARCHIVE_DIR / "elsewhere.mar").symlink_to(tmp_path / "file")
    for out in (home, tmp_path / "file", linked, settings.REPO):
        with pytest.raises(NotABundleError):
            write_bundle(out, archive)
    assert (home / "notes.txt").read_text() == "keep me" and (tmp_path / "file").exists()
    assert (linked / CONFIG_PATH).exists()


def test_the_readme_sends_tokens_and_photos_to_the_cluster_over_https_only():
    readme = (settings.REPO / "docs" / "deploy.md").read_text()
    steps = readme[readme.index("### KServe, step by step"):readme.index("What `deploy/kserve/` sets")]
    assert "Bearer $TOKEN" in steps and "https://$SERVICE_HOSTNAME/v2/models/skin/infer" in steps
    assert "http://" not in steps
