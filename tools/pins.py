"""The pins of one of pyproject.toml's extras, where SKIN pins its dependencies.

    python tools/pins.py serve torch torchvision   # prints "torch==2.14.1 torchvision==0.29.1"

Standard library only, and runnable as a file beside ``../pyproject.toml``: the container build runs
it before anything of SKIN's is installed, to take torch's version from the same place as the rest.
"""
from __future__ import annotations

import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def pins(extra: str, pyproject: Path = PYPROJECT) -> dict[str, str]:
    """{name: version} of an extra's ``name==version`` lines, names lower-cased."""
    project = tomllib.loads(pyproject.read_text())["project"]
    lines = project["optional-dependencies"][extra]
    return {name.strip().lower(): version.strip()
            for name, version in (line.split("==") for line in lines)}


def main(argv: list[str]) -> None:
    extra, *names = argv
    pinned = pins(extra)
    print(" ".join(f"{name}=={pinned[name]}" for name in names or pinned))


if __name__ == "__main__":
    main(sys.argv[1:])
