"""Peak memory of a TorchServe worker while it answers one 48-megapixel photo, per format.

    python -m bench.decode_memory

Starts its own TorchServe (free ports, one worker, batch size 1) on the shipped release, resets the
worker's peak-RSS mark (/proc/PID/clear_refs) before each photo, and prints what the peak rose to
above the worker's resident memory before that request. Linux only; about a minute.
"""
from __future__ import annotations

import io
import tempfile
from pathlib import Path

import requests
from PIL import Image

import settings
from loadtest.images import smooth_photo
from serve.torchserve import TorchServe
from tools.archive import build_archive

SIZE = (8000, 6000)  # 48 MP, a 48-megapixel phone's full-resolution mode
ONE_WORKER = "minWorkers: 1\nmaxWorkers: 1\nbatchSize: 1\nmaxBatchDelay: 1\nresponseTimeout: 120\n"


def encoded(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return out.getvalue()


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS since the last reset) of a process, in MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {key: int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM")}


def main() -> None:
    photos = {"PNG RGB": encoded(smooth_photo(SIZE), "PNG"),
              "PNG RGBA": encoded(smooth_photo(SIZE, "RGBA"), "PNG"),
              "JPEG": encoded(smooth_photo(SIZE), "JPEG")}
    with tempfile.TemporaryDirectory(prefix="skin-decode-memory-") as scratch:
        store, config = Path(scratch) / "store", Path(scratch) / "one-worker.yaml"
        config.write_text(ONE_WORKER)
        build_archive(weights=settings.WEIGHTS, export_path=store, config_file=config)
        with TorchServe.on_free_ports(Path(scratch) / "home", model_store=store).running() as server:
            described = server.management().call("GET", "/models/skin", timeout=30).json()
            pid = described[0]["workers"][0]["pid"]
            print(f"{SIZE[0]}x{SIZE[1]} photo, worker pid {pid}")
            print(f"{'photo':<10} {'body MB':>8} {'status':>6} {'RSS before':>11} {'peak':>8} {'peak - before':>14}")
            for name, body in photos.items():
                Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset VmHWM to the current RSS
                before = memory_mb(pid)["VmRSS"]
                status = requests.post(server.inference_url(), data=body, headers=server.headers(),
                                       timeout=120).status_code
                peak = memory_mb(pid)["VmHWM"]
                print(f"{name:<10} {len(body) / 1e6:>8.1f} {status:>6} {before:>9.0f} MiB "
                      f"{peak:>4.0f} MiB {peak - before:>10.0f} MiB")


if __name__ == "__main__":
    main()
