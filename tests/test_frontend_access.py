"""Phone mode's pass phrase stands in front of everything a real Streamlit serves: without it no page,
no WebSocket (so no session) and no upload; with it the page and its WebSocket open, and bodies over
the cap are refused before they are read."""
from __future__ import annotations

import http.client
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

import settings
from frontend.access import COOKIE_NAME, LOGIN_PATH, PASS_PHRASE_VARIABLE, new_pass_phrase, request_body_limit
from frontend.texts import CHINESE, ENGLISH
from serve.certificate import Tls, ensure_certificate
from serve.launcher import wait_for_page
from serve.page import page_environment, streamlit_command
from serve.processes import stop_process
from serve.torchserve import free_port

UPLOAD = "/_stcore/upload_file/session/file"
STREAM = "/_stcore/stream"


@dataclass(frozen=True)
class PhonePage:
    url: str
    tls: Tls
    phrase: str

    def get(self, path: str, **kwargs) -> requests.Response:
        return requests.get(self.url + path, verify=self.tls.ca, allow_redirects=False,
                            timeout=10, **kwargs)

    def log_in(self, phrase: str) -> requests.Response:
        return requests.post(self.url + LOGIN_PATH, data={"phrase": phrase}, verify=self.tls.ca,
                             allow_redirects=False, timeout=10)

    def websocket(self, cookie: str | None = None):
        context = ssl.create_default_context(cafile=str(self.tls.ca))
        headers = {"Cookie": f"{COOKIE_NAME}={cookie}"} if cookie else {}
        return connect(self.url.replace("https", "wss") + STREAM, ssl=context,
                       additional_headers=headers, subprotocols=["streamlit"], open_timeout=10)

    def declared_only(self, method: str, headers: dict[str, str]) -> http.client.HTTPResponse:
        """A request that declares its body and sends none of it: the answer must come unread."""
        connection = http.client.HTTPSConnection(
            self.url.removeprefix("https://"), timeout=10,
            context=ssl.create_default_context(cafile=str(self.tls.ca)))
        connection.putrequest(method, UPLOAD)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        return connection.getresponse()


@pytest.fixture(scope="module")
def phone_page(tmp_path_factory) -> Iterator[PhonePage]:
    """A real `streamlit run` in phone mode (HTTPS, a pass phrase), on loopback with a certificate
    for 127.0.0.1; no TorchServe is needed to open the page."""
    tls = ensure_certificate(tmp_path_factory.mktemp("tls"), "127.0.0.1")
    phrase, port = new_pass_phrase(), free_port()
    page = subprocess.Popen(streamlit_command(port, tls), cwd=settings.REPO,
                            env=page_environment({PASS_PHRASE_VARIABLE: phrase}),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_page(page, port, tls)
        yield PhonePage(f"https://127.0.0.1:{port}", tls, phrase)
    finally:
        stop_process(page)


@pytest.fixture(scope="module")
def cookie(phone_page) -> str:
    answer = phone_page.log_in(phone_page.phrase.upper() + " ")  # as a phone may type it
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    set_cookie = answer.headers["set-cookie"]
    for attribute in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/"):
        assert attribute in set_cookie
    return answer.cookies[COOKIE_NAME]


def test_an_unauthenticated_client_gets_no_page_no_session_and_no_upload(phone_page):
    for path in ("/", "/_stcore/health", "/static/index.html"):
        answer = phone_page.get(path)
        assert answer.status_code == 303 and answer.headers["location"] == LOGIN_PATH, path
    with pytest.raises(InvalidStatus) as refused:
        phone_page.websocket()
    assert refused.value.response.status_code == 403
    with pytest.raises(InvalidStatus):
        phone_page.websocket(cookie="forged")
    upload = requests.put(phone_page.url + UPLOAD, files={"file": ("a.jpg", b"\xff" * 2**20)},
                          verify=phone_page.tls.ca, timeout=10)
    assert upload.status_code == 401
    # Refused on its headers alone: a client that never sends its 16 MiB is answered all the same.
    assert phone_page.declared_only("PUT", {"Content-Length": str(16 * 2**20)}).status == 401


def test_a_wrong_phrase_gets_the_form_again_and_no_cookie(phone_page):
    form = phone_page.get(LOGIN_PATH)
    assert form.status_code == 200
    assert ENGLISH.pass_phrase_label in form.text and CHINESE.pass_phrase_label in form.text
    wrong = phone_page.log_in("000000-000000-000000")
    assert wrong.status_code == 401 and COOKIE_NAME not in wrong.cookies
    assert ENGLISH.pass_phrase_wrong in wrong.text
    assert phone_page.get("/", cookies=wrong.cookies).status_code == 303


def test_the_pass_phrase_opens_the_page_and_its_websocket(phone_page, cookie):
    page = phone_page.get("/", cookies={COOKIE_NAME: cookie})
    assert page.status_code == 200 and "<title>Streamlit</title>" in page.text
    assert phone_page.get("/_stcore/health", cookies={COOKIE_NAME: cookie}).text == "ok"
    with phone_page.websocket(cookie) as socket:
        assert socket.subprotocol == "streamlit"


def test_bodies_over_the_cap_or_of_unknown_length_are_refused_unread(phone_page, cookie):
    assert request_body_limit() <= 17 * 2**20 and settings.UPLOAD_LIMIT_MB == 16
    sent = {"Cookie": f"{COOKIE_NAME}={cookie}"}
    assert phone_page.declared_only("PUT", {**sent, "Content-Length": str(request_body_limit() + 1)}).status == 413
    assert phone_page.declared_only("PUT", {**sent, "Transfer-Encoding": "chunked"}).status == 411
    assert phone_page.declared_only("PUT", sent).status == 411
