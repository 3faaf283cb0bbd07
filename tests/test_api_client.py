"""api/: the one client every consumer uses. Keys renewed before they expire and re-read by every
client, a worker that died mid-batch retried once and then told in words, read timeouts reported
without a traceback, and nothing internal in what a phone user reads.
"""
from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from api.keys import read_key, read_keys
from api.problems import Problem, ServerProblem
from frontend.connection import ClientConfig, SkinClient
from frontend.texts import LANGUAGES
from ops.metrics import scrape
from serve.torchserve import TorchServe, free_port

# TorchServe's answer when the worker running a batch dies (kill -9, out of memory).
WORKER_DIED = {"code": 500, "type": "InternalServerException", "message": "Worker died."}
# Six seconds: TorchServe reads token_expiration_min as a float, so a test need not wait minutes.
SHORT_EXPIRY_MIN = 0.1
ROTATION_S = 2.0
# What an operator needs and a phone user cannot act on.
INTERNAL = ("http", "127.0.0.1", "make serve", ".json", "key_file", "SKIN_TOKEN", "Traceback")


class Scripted(BaseHTTPRequestHandler):
    """Answers POSTs from ``statuses`` in turn (then 200 with ``answer``) and counts them."""
    statuses: list[int] = []
    answer: dict = {}
    seen = 0

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        cls = type(self)
        status = cls.statuses[cls.seen] if cls.seen < len(cls.statuses) else 200
        cls.seen += 1
        body = json.dumps(WORKER_DIED if status == 500 else cls.answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args) -> None:
        pass


@pytest.fixture
def scripted_server(torchserve, inference_url, fixture_images):
    """A server that answers like TorchServe whose worker died, and then with a real answer."""
    real = requests.post(inference_url, data=fixture_images["MEL_ISIC_0024310.jpg"],
                         headers=torchserve.headers(), timeout=60)
    handler = type("Handler", (Scripted,), {"statuses": [], "answer": real.json(), "seen": 0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield handler, f"http://127.0.0.1:{server.server_address[1]}/predictions/skin"
    finally:
        server.shutdown()


@pytest.fixture
def silent_port():
    """A port that accepts connections and never answers: a hung server."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def page_sentences(problem: ServerProblem) -> list[str]:
    return [language.problems[problem.problem].format(detail=problem.detail)
            for language in LANGUAGES.values()]


def test_a_worker_that_died_mid_batch_is_retried_once(scripted_server, tmp_path):
    handler, url = scripted_server
    handler.statuses = [500]
    client = SkinClient(ClientConfig(url=url, key_file=tmp_path / "none.json"))
    ranking = client.classify(b"a photo")
    assert handler.seen == 2 and len(ranking.scores) == 8


def test_a_worker_that_dies_twice_reads_as_a_sentence(scripted_server, tmp_path):
    handler, url = scripted_server
    handler.statuses = [500, 500]
    client = SkinClient(ClientConfig(url=url, key_file=tmp_path / "none.json"))
    with pytest.raises(ServerProblem) as failure:
        client.classify(b"a photo")
    assert failure.value.problem is Problem.SERVER_ERROR and handler.seen == 2
    assert "Worker died" in failure.value.log  # for the log, not for the page
    for sentence in page_sentences(failure.value):
        assert "500" not in sentence and "Worker" not in sentence and "{" not in sentence


def test_no_page_sentence_names_urls_files_or_commands(torchserve, inference_url, tmp_path):
    stale = tmp_path / "key_file.json"
    stale.write_text(json.dumps({"inference": {"key": "stale"}}))
    cases = {
        Problem.NOT_RUNNING: ClientConfig(url=f"http://127.0.0.1:{free_port()}/predictions/skin",
                                          key_file=torchserve.key_file),
        Problem.KEY: ClientConfig(url=inference_url, key_file=stale),
        Problem.NOT_LOADED: ClientConfig(url=inference_url.replace("/skin", "/absent"),
                                         key_file=torchserve.key_file),
    }
    for expected, config in cases.items():
        with pytest.raises(ServerProblem) as failure:
            SkinClient(config).classify(b"a photo")
        assert failure.value.problem is expected
        for sentence in page_sentences(failure.value):
            assert not [word for word in INTERNAL if word in sentence], (expected, sentence)
    for language in LANGUAGES.values():
        for problem, sentence in language.problems.items():
            assert not [word for word in INTERNAL if word in sentence], (problem, sentence)


def test_keys_are_renewed_before_they_expire_and_every_client_rereads_them(model_store, tmp_path,
                                                                          fixture_images):
    image = fixture_images["MEL_ISIC_0024310.jpg"]
    server = TorchServe.on_free_ports(tmp_path / "ts", model_store=model_store,
                                      overrides={"token_expiration_min": str(SHORT_EXPIRY_MIN)})
    server.start()
    # Renewing from the start: a six-second key would expire before the model has loaded.
    rotator = server.key_rotator(ROTATION_S)
    rotator.start()
    try:
        server.wait_ready(timeout=120)
        server.write_page_key()
        page = SkinClient(ClientConfig(url=server.inference_url(), key_file=server.page_key_file))
        ops = server.management()
        assert len(page.classify(image).scores) == 8 and ops.models()
        first = read_keys(server.key_file)
        # Past the keys' six-second life: only renewed keys still work.
        time.sleep(SHORT_EXPIRY_MIN * 60 + 2 * ROTATION_S)
        assert len(page.classify(image).scores) == 8
        assert ops.models()
        rotator.stop()
        for api in ("inference", "management"):
            assert read_key(server.key_file, api) != first[api]["key"]
        assert read_key(server.page_key_file) == read_key(server.key_file)
        old = requests.post(server.inference_url(), data=image, timeout=60,
                            headers={"Authorization": f"Bearer {first['inference']['key']}"})
        assert old.status_code == 400 and old.json()["type"] == "InvalidKeyException"
        # A rotation the clients did not see coming: the next request re-reads the key and succeeds.
        server.key_rotator(ROTATION_S).rotate()
        assert len(page.classify(image).scores) == 8 and ops.models()
    finally:
        rotator.stop()
        server.stop()


def test_wait_ready_on_a_hung_server_times_out_without_a_traceback(silent_port, tmp_path):
    server = TorchServe(home=tmp_path, ports={"management": silent_port})
    server.key_file.write_text(json.dumps({"management": {"key": "k"}}))
    with pytest.raises(TimeoutError, match="not READY"):
        server.wait_ready(timeout=1)


def test_metrics_on_a_hung_server_is_one_line(silent_port):
    with pytest.raises(ServerProblem, match="no answer within 1s"):
        scrape(f"http://127.0.0.1:{silent_port}", timeout=1)
