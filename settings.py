"""SKIN's settings: the one place for its ports, paths, sizes, data folders and release version.

Standard library only, so that the page, the client and the launcher import it without torch.
config.properties and handler/model-config.yaml are TorchServe's own files and stay hand-written
for the people who tune them; tests/test_settings.py checks that they agree with what is here.
"""
from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent

# The release being trained, and the version its archive and answers carry.
RELEASE_VERSION = "3.4"
MODEL_NAME = "skin"

# TorchServe's APIs as `make serve` runs them (config.properties), and the page's port.
LOOPBACK = "127.0.0.1"
INFERENCE_PORT = 8080
MANAGEMENT_PORT = 8081
METRICS_PORT = 8082
PAGE_PORT = 8501
# TorchServe always opens gRPC too (kept on loopback).
GRPC_INFERENCE_PORT = 7070
GRPC_MANAGEMENT_PORT = 7071
# With the v2 protocol the protocol's front (oip/) answers on the inference port, as KServe's model
# server does in a pod, and TorchServe listens behind it on this one, as there.
BEHIND_FRONT_PORT = 8085
INFERENCE_URL = f"http://{LOOPBACK}:{INFERENCE_PORT}"
MANAGEMENT_URL = f"http://{LOOPBACK}:{MANAGEMENT_PORT}"
METRICS_URL = f"http://{LOOPBACK}:{METRICS_PORT}"
# The largest request TorchServe takes (config.properties' max_request_size): a phone photo is
# 3-12 MB. The page's upload limit and its login gate's body cap follow from it.
MAX_REQUEST_BYTES = 16 * 2**20
# The same in Streamlit's megabytes (MiB), for its server.maxUploadSize: the page takes any file the
# server would, and refuses up front what the server would answer with 413.
UPLOAD_LIMIT_MB = MAX_REQUEST_BYTES // 2**20

# Where the release, its archive and TorchServe's configuration live.
MODEL_STORE = REPO / "model_store"
WEIGHTS = MODEL_STORE / "skin_resnet34.pt"
ARCHIVE = MODEL_STORE / f"{MODEL_NAME}.mar"
TORCHSERVE_CONFIG = REPO / "config.properties"
MODEL_CONFIG = REPO / "handler" / "model-config.yaml"
# Run-time state, never committed: `make serve`'s TorchServe home (its key files) and the page's
# certificates.
RUN_DIR = REPO / ".run"
SERVE_HOME = RUN_DIR / "serve"
TLS_DIR = RUN_DIR / "tls"
KEY_FILE_NAME = "key_file.json"
# The inference key alone, beside key_file.json: all that the page gets.
PAGE_KEY_FILE_NAME = "page_key.json"
# Where `make serve`'s clients find their keys: ops and the load test all of them, the page its own.
KEY_FILE = SERVE_HOME / KEY_FILE_NAME
PAGE_KEY_FILE = SERVE_HOME / PAGE_KEY_FILE_NAME

# The next release's input, height x width: 4:3 like a dermatoscope photo. A release records its own
# (metadata input_size), which serving reads. 150x200 like 3.4's and its teachers': distilled from
# the same teachers, a student there beat one at 96x128 by about 0.02 validation BMA, at the
# operating point too, for 2.3x the compute (MODEL_CARD.md).
IMAGE_SIZE = (150, 200)
TEACHER_SIZE = (150, 200)

# Training data, relative to the repository root where every command runs: HAM10000, and the ISIC
# 2019 images from BCN20000 and the ISIC archive. Any list of folders in the same layout will do.
DATA_DIRS = (Path("../shared/data/ham10000"), Path("../shared/data/isic2019-84px"))
