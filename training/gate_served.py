"""What a served gate does with the gate's sets, asked through TorchServe's API as any client asks.

    python -m training.gate_served --archive model_store/skin.mar --report reports/gate_served.json

Starts its own TorchServe on free ports with ``--archive`` (this release's, or one built from an
older commit, whose handler and gate travel inside it), sends the release's test lesions, both
parts of the non-lesion set and the simulated clinical close-ups one photo per request, and counts
the verdicts: the test lesions kept per source and per class, the non-lesions refused per part and
per kind, the clinical close-ups kept. Photos go as the data sets hold them (JPEG) and as PNG for
generated ones, so nothing is lost on the way. For comparing gates, and for checking that the
served path gives what ``make gate`` measured in process.
"""
from __future__ import annotations

import argparse
import io
import json
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
import torch
from PIL import Image

import settings
from contract.classes import CODES
from handler.checkpoint import METADATA_FILE, load_metadata
from serve.torchserve import TorchServe
from training.clinical import SIZE as CLINICAL_SIZE
from training.clinical import clinical_views
from training.gate import clinical_sample, rate, rate_by
from training.ood_images import HELD_OUT, TUNING, ood_images
from training.presets import decode_frames
from training.splits import release_split

CONCURRENCY = 8


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def verdicts(server: TorchServe, bodies: Iterable[bytes]) -> list[dict]:
    """The gate's verdict on each photo, in order."""
    url = server.inference_url()
    session = requests.Session()

    def ask(body: bytes) -> dict:
        answer = session.post(url, data=body, headers=server.headers(), timeout=120)
        answer.raise_for_status()
        return answer.json()["gate"]

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        return list(pool.map(ask, bodies))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archive", type=Path, required=True)
    parser.add_argument("--weights", type=Path, default=settings.WEIGHTS,
                        help="the release whose split is sent (its metadata beside it)")
    parser.add_argument("--data", type=Path, nargs="+", default=list(settings.DATA_DIRS))
    parser.add_argument("--clinical-images", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report", type=Path, required=True)
    args = parser.parse_args(argv)
    metadata = load_metadata(args.weights.with_name(METADATA_FILE))
    samples, split = release_split(args.data, metadata["split"])
    report: dict = {"archive": str(args.archive)}
    with tempfile.TemporaryDirectory(prefix="skin-gate-served-") as home:
        server = TorchServe.on_free_ports(Path(home), model_store=args.archive.parent,
                                          models=f"skin={args.archive.name}")
        with server.running(timeout=300):
            tested = verdicts(server, (samples[i].path.read_bytes() for i in split.test))
            kept = [gate["accepted"] for gate in tested]
            by_class = rate_by(kept, [CODES[samples[i].label] for i in split.test])
            report["test"] = {"images": len(kept), "kept": rate(kept),
                              "kept_by_source": rate_by(kept, [samples[i].source for i in split.test]),
                              "kept_by_class": {code: by_class.get(code) for code in CODES}}
            for part in (TUNING, HELD_OUT):
                kinds: list[str] = []

                def bodies(part: str = part, kinds: list = kinds):
                    for other in ood_images(args.seed, part):
                        kinds.append(other.kind)
                        yield png(other.image)
                refused = [not gate["accepted"] for gate in verdicts(server, bodies())]
                report[f"non_lesions_{part}"] = {"images": len(refused), "refused": rate(refused),
                                                 "refused_by_kind": rate_by(refused, kinds)}
            chosen = clinical_sample(split.test, args.clinical_images, args.seed)
            frames = decode_frames([samples[i].path for i in chosen], CLINICAL_SIZE, desc="clinical")
            generator = torch.Generator().manual_seed(args.seed)
            views = (png(view) for start in range(0, len(frames), 64)
                     for view in clinical_views(frames[start:start + 64], generator))
            report["clinical_simulated"] = {"images": len(chosen), "kept": rate(
                [gate["accepted"] for gate in verdicts(server, views)])}
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
