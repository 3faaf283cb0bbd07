"""What the clients import: the page, the API client and the load test run without torch, and the
layers stay apart (read from the source with ast, so a lazy import inside a function counts too)."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Lowest first: a package may import only the ones before it, so no import points upwards.
LAYERS = ("settings", "contract", "imaging", "api", "handler", "frontend", "oip", "serve", "tools", "ops",
          "loadtest", "training", "bench")
# Imports each module in turn and names the first after which torch is loaded.
PROBE = """
import importlib, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
    if "torch" in sys.modules:
        sys.exit(f"importing {name} loaded torch")
"""


def modules_of(package: str) -> list[str]:
    return [f"{package}.{path.stem}" for path in sorted((REPO / package).glob("*.py"))
            if path.stem != "__init__"]


def imported(path: Path) -> set[str]:
    """The top-level packages a file imports, anywhere in its code."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("client, modules", [
    ("the page", modules_of("frontend")),
    ("the API client", modules_of("api")),
    ("the load test", ["loadtest.locustfile"]),
    ("the contract and the decoder", modules_of("contract") + modules_of("imaging")),
])
def test_a_client_imports_no_torch(client, modules):
    # A fresh interpreter: this one has loaded torch for other tests.
    probe = subprocess.run([sys.executable, "-c", PROBE, *modules], cwd=REPO, capture_output=True,
                           text=True, timeout=180)
    assert probe.returncode == 0, f"{client}: {probe.stderr[-2000:]}"


@pytest.mark.parametrize("path", sorted((REPO / "frontend").glob("*.py")), ids=lambda path: path.name)
def test_the_page_imports_neither_the_handler_nor_the_tools_nor_its_launcher(path):
    assert not imported(path) & {"handler", "tools", "serve"}


@pytest.mark.parametrize("package", LAYERS)
def test_no_import_points_upwards(package):
    files = [REPO / "settings.py"] if package == "settings" else sorted((REPO / package).glob("*.py"))
    above = set(LAYERS[LAYERS.index(package) + 1:])
    upward = {f"{path.relative_to(REPO)}: {name}" for path in files for name in imported(path) & above}
    assert not upward, sorted(upward)


@pytest.mark.parametrize("path", sorted((REPO / "contract").glob("*.py")), ids=lambda path: path.name)
def test_the_contract_imports_the_standard_library_alone(path):
    assert imported(path) <= set(sys.stdlib_module_names) | {"contract"}


@pytest.mark.parametrize("path", sorted((REPO / "imaging").glob("*.py")), ids=lambda path: path.name)
def test_the_decoder_imports_pillow_and_the_contract_alone(path):
    assert imported(path) <= set(sys.stdlib_module_names) | {"contract", "imaging", "PIL"}
