"""The Open Inference Protocol's front for a local TorchServe, as KServe's model server is in a pod.

TorchServe 0.12 with the kservev2 envelope answers ``/v2/models/<model>/infer`` (and ``/explain``)
alone: the protocol's health, server and model metadata and model readiness routes answer 404, and
a request in the binary tensor data extension gets 400. In a cluster KServe's own model server
answers those in front of TorchServe. Locally this front does: it answers them from TorchServe's
``/ping`` and management API, turns binary requests into JSON ones for TorchServe and JSON answers
into binary ones where asked, and passes JSON requests through untouched. It takes only the
inference key that TorchServe would (none when TorchServe's token authorization is off).
"""
from __future__ import annotations

import hmac
import json
from dataclasses import dataclass, field

import requests
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from ts.version import __version__ as TORCHSERVE_VERSION

from api.client import FAST_CALL_S, READ_TIMEOUT_S
from api.keys import KeySource
from api.management import ManagementClient
from api.problems import ServerProblem
from contract import v2
from oip import binary

# The protocol's extension this front adds to what TorchServe speaks.
EXTENSIONS = ["binary_tensor_data"]
PLATFORM = "pytorch_torchserve"
JSON_TYPE = "application/json"
# TorchServe's own answer to a wrong key (400, not 401), which SKIN's clients already recognise.
KEY_REFUSED = {"code": 400, "type": "InvalidKeyException",
               "message": "Token Authorization failed. Token either incorrect, expired, or not "
                          "provided correctly"}


@dataclass
class Backend:
    """The TorchServe behind the front: its inference URL, its management API, and its keys."""

    inference_url: str
    management: ManagementClient
    keys: KeySource | None
    session: requests.Session = field(default_factory=requests.Session)

    def admits(self, request: Request) -> bool:
        if self.keys is None:
            return True
        key = self.keys.key()
        given = request.headers.get("authorization", "")
        return key is not None and hmac.compare_digest(given.encode(), f"Bearer {key}".encode())

    def healthy(self) -> bool | None:
        """True when /ping says Healthy, False when it says otherwise, None when nothing answers."""
        try:
            response = self.session.get(f"{self.inference_url}/ping", timeout=FAST_CALL_S,
                                        headers=self.keys.headers() if self.keys else {})
        except requests.RequestException:
            return None
        try:
            return response.status_code == 200 and response.json().get("status") == "Healthy"
        except ValueError:
            return False

    def versions(self, model: str) -> list[str] | None:
        """The versions TorchServe serves of ``model``, or None when it serves no such model."""
        try:
            response = self.management.call("GET", f"/models/{model}/all")
            return [description["modelVersion"] for description in response.json()] \
                if response.status_code == 200 else None
        except (ServerProblem, ValueError, KeyError, TypeError):
            return None


def error(status: int, detail: str) -> JSONResponse:
    return JSONResponse(v2.error(detail), status_code=status)


def body_problem(request: Request, body_limit: int) -> JSONResponse | None:
    """Why a body is refused unread. Only the protocol's JSON and binary bodies pass: multipart is
    refused here, before TorchServe's Netty decoder would parse it (CVE-2024-29025), and so is a
    body of unknown length or over TorchServe's own limit, which this front would hold in memory."""
    if request.headers.get("content-type", "").lower().startswith("multipart/"):
        return error(415, "send the protocol's JSON, or its binary tensor data extension")
    length = request.headers.get("content-length", "")
    if "transfer-encoding" in request.headers or not length.isdigit():
        return error(411, "send a Content-Length")
    if int(length) > body_limit:
        return error(413, f"the body is larger than {body_limit} bytes")
    return None


def create_app(backend: Backend, body_limit: int) -> Starlette:
    def guarded(endpoint):
        def checked(request: Request) -> Response:
            if not backend.admits(request):
                return JSONResponse(KEY_REFUSED, status_code=400)
            return endpoint(request)
        return checked

    def live(_: Request) -> Response:
        return Response(status_code=200 if backend.healthy() is not None else 503)

    def ready(_: Request) -> Response:
        return Response(status_code=200 if backend.healthy() else 503)

    def server_metadata(_: Request) -> Response:
        return JSONResponse({"name": "torchserve", "version": TORCHSERVE_VERSION,
                             "extensions": EXTENSIONS})

    def model_metadata(request: Request) -> Response:
        model, version = request.path_params["model"], request.path_params.get("version")
        versions = backend.versions(model)
        if not versions or (version and version not in versions):
            return error(404, f"no model {model}" + (f" version {version}" if version else ""))
        return JSONResponse({"name": model, "versions": versions, "platform": PLATFORM,
                             "inputs": list(v2.INPUTS), "outputs": list(v2.OUTPUTS)})

    def model_ready(request: Request) -> Response:
        model = request.path_params["model"]
        if backend.versions(model) is None:
            return error(404, f"no model {model}")
        if backend.management.model_status(model) != "READY":
            return error(400, f"model {model} has no worker ready")
        return Response(status_code=200)

    async def infer(request: Request) -> Response:
        if not backend.admits(request):
            return JSONResponse(KEY_REFUSED, status_code=400)
        if problem := body_problem(request, body_limit):
            return problem
        body = await request.body()
        header_length = request.headers.get(binary.HEADER_LENGTH)
        try:
            parsed = (binary.read_request(body, int(header_length)) if header_length
                      else json.loads(body))
        except binary.BinaryRequestError as exc:
            return error(400, str(exc))
        except ValueError:
            # Not JSON: TorchServe's handler says so in its own words.
            parsed = None
        if header_length:
            body = json.dumps(parsed).encode()
        return await forward(request, body, parsed)

    async def forward(request: Request, body: bytes, parsed: object) -> Response:
        url = backend.inference_url + request.url.path
        headers = {"content-type": JSON_TYPE,
                   "authorization": request.headers.get("authorization", "")}
        try:
            answer = await run_in_threadpool(backend.session.post, url, data=body, headers=headers,
                                             timeout=READ_TIMEOUT_S)
        except requests.RequestException as exc:
            return error(503, f"TorchServe did not answer: {exc}")
        if answer.status_code != 200 or not isinstance(parsed, dict) \
                or not request.url.path.endswith("/infer"):
            return Response(answer.content, status_code=answer.status_code,
                            media_type=answer.headers.get("content-type", JSON_TYPE))
        content, header_length = binary.write_response(parsed, answer.json())
        if header_length is None:
            return Response(content, media_type=JSON_TYPE)
        return Response(content, media_type="application/octet-stream",
                        headers={binary.HEADER_LENGTH: str(header_length)})

    async def explain(request: Request) -> Response:
        if not backend.admits(request):
            return JSONResponse(KEY_REFUSED, status_code=400)
        if problem := body_problem(request, body_limit):
            return problem
        return await forward(request, await request.body(), None)

    routes = [Route("/v2/health/live", guarded(live)), Route("/v2/health/ready", guarded(ready)),
              Route("/v2", guarded(server_metadata))]
    for prefix in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):
        routes += [Route(prefix, guarded(model_metadata)),
                   Route(f"{prefix}/ready", guarded(model_ready)),
                   Route(f"{prefix}/infer", infer, methods=["POST"]),
                   Route(f"{prefix}/explain", explain, methods=["POST"])]
    return Starlette(routes=routes)
