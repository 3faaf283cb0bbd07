"""TorchServe's own configuration files agree with settings.py, the one place for ports and paths."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from urllib.parse import urlparse

import yaml

import settings
from handler.checkpoint import WEIGHTS_FILE
from serve.torchserve import ADDRESS_KEYS, DEFAULT_PORTS, GRPC_PORT_KEYS, read_properties
from tools.archive import DEFAULT_CONFIG


def test_config_properties_listens_where_settings_says():
    properties = read_properties(settings.TORCHSERVE_CONFIG)
    for api, key in ADDRESS_KEYS.items():
        address = urlparse(properties[key])
        assert (address.hostname, address.port) == (settings.LOOPBACK, DEFAULT_PORTS[api]), key
    for api, key in GRPC_PORT_KEYS.items():
        assert int(properties[key]) == DEFAULT_PORTS[api], key
    assert f"http://{settings.LOOPBACK}:{DEFAULT_PORTS['inference']}" == settings.INFERENCE_URL


def test_config_properties_takes_the_request_size_and_model_that_settings_names():
    properties = read_properties(settings.TORCHSERVE_CONFIG)
    assert int(properties["max_request_size"]) == settings.MAX_REQUEST_BYTES
    assert settings.UPLOAD_LIMIT_MB * 2**20 == settings.MAX_REQUEST_BYTES
    assert (settings.REPO / properties["model_store"]).resolve() == settings.MODEL_STORE
    assert properties["load_models"] == f"{settings.MODEL_NAME}={settings.ARCHIVE.name}"


def test_the_archive_is_built_from_the_files_settings_names():
    assert DEFAULT_CONFIG == settings.MODEL_CONFIG
    assert settings.WEIGHTS.name == WEIGHTS_FILE and settings.ARCHIVE.suffix == ".mar"
    config = yaml.safe_load(settings.MODEL_CONFIG.read_text())
    assert config["minWorkers"] <= config["maxWorkers"] and config["batchSize"] >= 1


def test_the_package_version_is_the_release_version():
    shown = subprocess.run([sys.executable, "-m", "pip", "show", "skin"], capture_output=True, text=True,
                           check=True, timeout=60).stdout
    assert re.search(r"^Version: (.+)$", shown, flags=re.M).group(1) == settings.RELEASE_VERSION


def test_ports_and_release_paths_are_written_nowhere_else():
    pattern = re.compile(r"\b(8080|8081|8082|8501|7070|7071|8085)\b|skin_resnet34\.pt|isic2019-84px")
    offending = [f"{path.relative_to(settings.REPO)}:{node.lineno}: {node.value!r}"
                 for folder in ("api", "bench", "contract", "frontend", "loadtest", "oip", "ops", "serve", "tools",
                                "training")
                 for path in (settings.REPO / folder).rglob("*.py")
                 for node in code_constants(ast.parse(path.read_text()))
                 if pattern.search(str(node.value))]
    assert not offending, "\n".join(offending)


def code_constants(tree: ast.AST) -> list[ast.Constant]:
    """The constants of a module that code uses: not docstrings, and not the help texts that show a
    reader the defaults."""
    prose = {id(node.body[0].value) for node in ast.walk(tree)
             if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body
             and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    prose |= {id(constant) for keyword in ast.walk(tree) if isinstance(keyword, ast.keyword)
              and keyword.arg in ("help", "description") for constant in ast.walk(keyword.value)}
    return [node for node in ast.walk(tree) if isinstance(node, ast.Constant) and id(node) not in prose]
