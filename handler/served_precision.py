"""Which precision a release is served at: the choice measured for this kind of CPU, the int8
calibrations beside it, and the record an archive carries of what it runs.

Every file beside the weights names the weights' SHA-256, so a new release is never served with an
old release's choice or calibration. A choice holds only on the kind of CPU it was measured on (its
flags in ``handler.cpus.CPU_FLAGS``): without VNNI an int8 dot product sums pairs into 16 bits, and
without AVX-512 bf16 runs at a fraction of fp32's speed. So there is one choice per kind,
``skin_precision/<kind>.json``; ``make serve`` measures a missing one on first run
(tools/precision_choice.py). An archive carries every kind's choice and a worker runs its own
kind's; a kind without one is served in fp32.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from handler.cpus import cpu_info, cpu_kind
from handler.gate import file_sha256
from handler.runners import CALIBRATION_FILE, INT8_QCONFIGS, PRECISIONS

CHOICES_DIR = "skin_precision"
# The validation images a choice is scored on, by path under the data folders' parent, with their
# labels and the fp32 release's top class: written by `make precision`, read on first `make serve`.
CHECK_FILE = "skin_precision_check.json"
# Inside an archive: the precision it runs, where that came from, and the choice's figures.
SERVED_FILE = "skin_served_precision.json"


def this_kind() -> str:
    return cpu_kind(cpu_info()["flags"])


def choice_path(weights: Path, kind: str | None = None) -> Path:
    """Where the choice for ``kind`` (default: this CPU's) of ``weights`` lives."""
    return Path(weights).with_name(CHOICES_DIR) / f"{kind or this_kind()}.json"


def check_path(weights: Path) -> Path:
    return Path(weights).with_name(CHECK_FILE)


def calibration_path(weights: Path) -> Path:
    return Path(weights).with_name(CALIBRATION_FILE)


def save_calibration_for(calibrations: dict[str, dict[str, torch.Tensor]], weights: Path,
                         images: int) -> str:
    """Write the int8 calibrations of ``weights`` beside them; returns the weights' SHA-256."""
    sha = file_sha256(weights)
    torch.save({"weights_sha256": sha, "images": images, "activations": calibrations},
               calibration_path(weights))
    return sha


def load_calibration(path: Path, weights_sha256: str) -> dict[str, dict[str, torch.Tensor]]:
    """Each int8 variant's activation parameters at ``path`` (handler.runners.calibrate), checked
    to be calibrated on exactly these weights."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path} is missing: int8 needs the release's calibration "
                                "(make precision)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state["weights_sha256"] != weights_sha256:
        raise ValueError(f"{path} was calibrated on other weights: rerun make precision")
    if set(state["activations"]) != set(INT8_QCONFIGS):
        raise ValueError(f"{path} does not hold the int8 variants {', '.join(INT8_QCONFIGS)}: rerun "
                         "make precision")
    return state["activations"]


def release_choices(weights: Path) -> dict[str, dict]:
    """Every kind of CPU's choice measured for exactly these weights, by kind."""
    folder, sha = Path(weights).with_name(CHOICES_DIR), file_sha256(weights)
    choices = {path.stem: json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))}
    return {kind: choice for kind, choice in choices.items() if choice.get("weights_sha256") == sha}


def release_choice(weights: Path) -> dict | None:
    """The choice measured for exactly these weights on this kind of CPU, or None."""
    return release_choices(weights).get(this_kind())


def resolve(requested: str | None, choices: dict[str, dict], kind: str) -> dict:
    """What runs on a ``kind`` CPU: ``requested`` when given, else that kind's choice, else fp32;
    with the choice's figures when there are any."""
    choice = choices.get(kind)
    if requested:
        precision, source = requested, "requested (PRECISION=)"
    elif choice:
        precision, source = choice["chosen"], f"measured on this kind of CPU, {kind}: {choice['why']}"
    else:
        precision, source = "fp32", (f"default (no precision measured for these weights on this kind of "
                                     f"CPU, {kind}; measured on: {', '.join(choices) or 'none'}. make "
                                     f"serve measures it where the validation images are)")
    return {"precision": precision, "source": source, "choice": choice, "cpu_kind": kind}


def served_record(weights: Path, requested: str | None = None) -> dict:
    """What an archive of ``weights`` records: the requested precision and every kind's choice, so
    that a worker on any measured kind runs its own; and, beside them, what runs on this CPU."""
    if requested is not None and requested not in PRECISIONS:
        raise ValueError(f"unknown precision {requested!r}; expected one of {', '.join(PRECISIONS)}")
    choices = release_choices(weights)
    return {"requested": requested, "choices": choices} | resolve(requested, choices, this_kind())


def needs_calibration(served: dict) -> bool:
    """Whether an archive with this record may run int8 on some kind of CPU."""
    chosen = {served["requested"], *(choice["chosen"] for choice in served["choices"].values())}
    return bool(chosen & set(INT8_QCONFIGS))


def read_served(model_dir: Path) -> dict:
    """What the unpacked archive in ``model_dir`` runs on this CPU: its requested precision, else
    the choice it carries for this kind of CPU (an archive built elsewhere, as in a container
    image, runs the choice measured for the kind it lands on), else fp32."""
    path = Path(model_dir) / SERVED_FILE
    if not path.is_file():
        return {"precision": "fp32", "source": f"default (the archive has no {SERVED_FILE})",
                "choice": None, "cpu_kind": this_kind()}
    served = json.loads(path.read_text())
    return resolve(served.get("requested"), served.get("choices", {}), this_kind())
