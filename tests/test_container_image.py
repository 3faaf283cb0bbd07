"""The Dockerfile's facts, checked statically (no registry here to pull a base image from): a
non-root user, the exposed ports, the copied paths, the health check and the entrypoint, and the
container configuration it generates."""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path
from urllib.parse import urlparse

import settings
from serve.torchserve import ADDRESS_KEYS, free_port, read_properties
from tools.deploy_config import CONTAINER_HOME, container_properties
from tools.lock import TORCH_PACKAGES, from_pypi

DOCKERFILE = settings.REPO / "Dockerfile"
# Built by `make archive`, on which `make image` depends; not committed.
BUILT_PATHS = {"model_store/skin.mar"}


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per Dockerfile instruction, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1])
            for line in lines if line and not line.startswith("#")]


def arguments(name: str) -> list[str]:
    return [args for instruction, args in instructions() if instruction == name]


def exec_form(args: str) -> list[str]:
    parsed = json.loads(args)
    assert isinstance(parsed, list), f"{args} is not in exec form"
    return parsed


def copies() -> list[tuple[list[str], str]]:
    result = []
    for args in arguments("COPY"):
        words = [w for w in shlex.split(args) if not w.startswith("--")]
        result.append((words[:-1], words[-1]))
    return result


def ignore_pattern_matches(path: str, pattern: str) -> bool:
    """As Docker reads .dockerignore: a pattern that names a folder covers everything inside it."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:end]) for end in range(1, len(parts) + 1)]
    if pattern.startswith("**/"):
        return any(fnmatch(part, pattern[3:]) for part in parts)
    return any(fnmatch(prefix, pattern) for prefix in prefixes)


def dockerignore_admits(path: str) -> bool:
    admitted = False
    for line in (settings.REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            if line.startswith("!"):
                admitted = admitted or ignore_pattern_matches(path, line[1:])
            else:
                admitted = admitted and not ignore_pattern_matches(path, line)
    return admitted


def test_runs_as_a_non_root_user_created_in_the_image():
    users = arguments("USER")
    assert users, "no USER: TorchServe would run as root"
    user = users[-1]
    assert user not in ("root", "0") and not user.startswith("0:")
    assert any("useradd" in run and user in run for run in arguments("RUN"))
    order = [instruction for instruction, _ in instructions()]
    assert order.index("USER") < order.index("ENTRYPOINT")
    assert arguments("WORKDIR")[-1] == CONTAINER_HOME == f"/home/{user}"


def test_exposes_inference_and_metrics_and_keeps_management_on_the_containers_loopback():
    exposed = {int(port) for args in arguments("EXPOSE") for port in args.split()}
    properties = container_properties()
    hosts = {api: urlparse(properties[key]).hostname for api, key in ADDRESS_KEYS.items()}
    assert hosts == {"inference": "0.0.0.0", "management": "127.0.0.1", "metrics": "0.0.0.0"}
    assert exposed == {urlparse(properties[ADDRESS_KEYS[api]]).port
                       for api in ("inference", "metrics")} == {8080, 8082}


def test_every_copied_path_exists_and_is_in_the_build_context():
    sources = [source for sources, _ in copies() for source in sources]
    assert "model_store/skin.mar" in sources and "config.properties" in sources
    assert "pyproject.toml" in sources and "requirements-serve.lock" in sources
    for source in sources:
        assert (settings.REPO / source).exists() or source in BUILT_PATHS, source
        assert dockerignore_admits(source), f"{source} is left out by .dockerignore"
    assert not dockerignore_admits(".venv") and not dockerignore_admits("runs")
    assert not dockerignore_admits("api/__pycache__/client.cpython-311.pyc")


def stage_home(root: Path) -> Path:
    """The Dockerfile's COPY instructions into the user's home, carried out under ``root`` (the
    built archive left out): the files the image's own Python commands can import."""
    home = root / CONTAINER_HOME.lstrip("/")
    for sources, destination in copies():
        if not destination.startswith(CONTAINER_HOME + "/"):
            continue
        target = root / destination.lstrip("/")
        for source in sources:
            if source in BUILT_PATHS:
                continue
            if (settings.REPO / source).is_dir():  # Docker copies a folder's contents into the destination
                shutil.copytree(settings.REPO / source, target, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__pycache__"))
                continue
            path = target / Path(source).name if destination.endswith("/") else target
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(settings.REPO / source, path)
    return home


def test_the_image_python_commands_run_on_the_copied_files_alone(tmp_path):
    home = stage_home(tmp_path)
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}

    def run(*args: str) -> subprocess.CompletedProcess:
        # As the image runs them: `python -m` from the WORKDIR, nothing else on the path.
        return subprocess.run([sys.executable, "-m", *args], cwd=home, env=environment,
                              capture_output=True, text=True, timeout=60)

    built = run("tools.deploy_config", "container", str(home / "torchserve.properties"))
    assert built.returncode == 0, built.stderr
    assert read_properties(home / "torchserve.properties") == container_properties()
    health = run("tools.healthcheck", "--url", f"http://127.0.0.1:{free_port()}/ping",
                 "--key-file", str(home / settings.KEY_FILE_NAME))
    assert health.returncode == 1 and "unhealthy: no answer" in health.stderr, health.stderr
    # ops through `docker exec`: it imports, and tells in one line that nothing answers.
    ops = run("ops", "--key-file", str(home / settings.KEY_FILE_NAME), "--management-url",
              f"http://127.0.0.1:{free_port()}", "models")
    assert ops.returncode == 1 and "Traceback" not in ops.stderr, ops.stderr


def test_the_workflow_store_is_an_empty_folder_of_the_users_own():
    store = f"{arguments('WORKDIR')[-1]}/{container_properties()['workflow_store']}"
    order = [instruction for instruction, _ in instructions()]
    made = [idx for idx, (instruction, args) in enumerate(instructions())
            if instruction == "RUN" and f"mkdir -m 700 {store}" in args]
    assert made and made[0] > order.index("USER"), "created by the user TorchServe runs as"


def test_no_pythonpath_puts_the_images_packages_before_the_archives():
    # TorchServe's workers get PYTHONPATH ahead of the archive's folder: the home's contract package
    # would shadow the archive's.
    assert not any("PYTHONPATH" in args for args in arguments("ENV"))


def test_the_archive_lands_in_the_model_store_the_container_config_names():
    destinations = {source: dest for sources, dest in copies() for source in sources}
    assert destinations["model_store/skin.mar"] == f"{container_properties()['model_store']}/skin.mar"
    assert read_properties(settings.REPO / "config.properties")["load_models"] == "skin=skin.mar"


def test_entrypoint_runs_torchserve_in_the_foreground_on_the_generated_config():
    entrypoint = exec_form(arguments("ENTRYPOINT")[-1])
    assert entrypoint[:2] == ["torchserve", "--start"] and "--foreground" in entrypoint
    config = entrypoint[entrypoint.index("--ts-config") + 1]
    assert any(run.startswith("python -m tools.deploy_config container") and run.endswith(config)
               for run in arguments("RUN"))


def test_healthcheck_pings_with_the_key_torchserve_writes_into_its_working_directory():
    healthcheck = arguments("HEALTHCHECK")[-1]
    command = exec_form(healthcheck.split("CMD", 1)[1].strip())
    assert command[:3] == ["python", "-m", "tools.healthcheck"]
    assert urlparse(command[command.index("--url") + 1]).path == "/ping"
    assert urlparse(command[command.index("--url") + 1]).port == 8080
    assert command[command.index("--key-file") + 1] == f"{arguments('WORKDIR')[-1]}/{settings.KEY_FILE_NAME}"
    assert "--start-period" in healthcheck


def test_token_authorization_stays_on_in_the_container():
    properties = container_properties()
    assert properties.get("disable_token_authorization", "false") == "false"
    assert properties["enable_envvars_config"] == "true", "TS_SERVICE_ENVELOPE=kservev2 must work"


def lock_pins() -> dict[str, tuple[str, list[str]]]:
    """requirements-serve.lock as {name: (version, hashes)}."""
    text = re.sub(r"\\\n", " ", (settings.REPO / "requirements-serve.lock").read_text())
    pins = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            requirement, *options = line.split()
            name, version = requirement.split("==")
            pins[name] = (version, [option.split("sha256:")[1] for option in options])
    return pins


def test_every_package_from_pypi_is_locked_with_its_hash_at_the_pinned_version():
    pins = lock_pins()
    wanted = dict(line.split("==") for line in from_pypi())
    assert set(wanted) <= set(pins), set(wanted) - set(pins)
    assert not set(pins) & set(TORCH_PACKAGES)
    for name, (version, hashes) in pins.items():
        assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", digest) for digest in hashes), name
        assert version == wanted.get(name, version), name


def test_torch_comes_from_its_index_alone_and_the_rest_from_pypi_with_hashes():
    runs = " ".join(arguments("RUN"))
    assert "--extra-index-url" not in runs
    torch_install, lock_install = [command.strip() for command in runs.split("&&")
                                   if "pip install" in command]
    assert '--index-url "${TORCH_INDEX}"' in torch_install
    asked = re.fullmatch(r".*\$\(python /tmp/requirements/(tools/pins\.py .*)\)", torch_install).group(1)
    printed = subprocess.run([sys.executable, *asked.split()], cwd=settings.REPO, capture_output=True, text=True,
                             check=True, timeout=60).stdout.split()
    assert [pin.split("==")[0] for pin in printed] == list(TORCH_PACKAGES)
    assert all(re.fullmatch(r"[a-z]+==[0-9.]+", pin) for pin in printed), printed
    assert "--index-url https://pypi.org/simple" in lock_install and "--require-hashes" in lock_install
    assert lock_install.endswith("requirements-serve.lock")


def test_the_gpu_variant_is_a_build_argument_the_makefile_passes():
    assert any(args.startswith("TORCH_INDEX=https://download.pytorch.org/whl/cpu")
               for args in arguments("ARG"))
    assert "--build-arg TORCH_INDEX=$(CUDA_TORCH_INDEX)" in (settings.REPO / "Makefile").read_text()


def test_the_page_run_against_the_container_gets_the_inference_key_alone(torchserve, tmp_path):
    readme = " ".join((settings.REPO / "docs" / "deploy.md").read_text().split())
    section = readme[readme.index("### The container image"):readme.index("### KServe, step by step")]
    command = "python -m api.keys page-key .run/docker-keys.json .run/docker-page-key.json"
    assert command in section and "SKIN_KEY_FILE=.run/docker-page-key.json" in section
    assert "SKIN_KEY_FILE=.run/docker-keys.json" not in section
    page_key = tmp_path / "page.json"
    subprocess.run([sys.executable, "-m", "api.keys", "page-key", str(torchserve.key_file),
                    str(page_key)], cwd=settings.REPO, check=True, capture_output=True, timeout=60)
    keys = json.loads(torchserve.key_file.read_text())
    assert json.loads(page_key.read_text()) == {"inference": keys["inference"]}
    assert not page_key.stat().st_mode & 0o077
