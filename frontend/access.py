"""Phone mode's pass phrase, in front of everything the page serves.

On the LAN anyone could reach the page, and the page is more than its HTML: Streamlit's WebSocket
runs the script, and its upload endpoint keeps every file in memory on the machine that also runs
TorchServe. So the check sits ahead of all of Streamlit, as ASGI middleware on Streamlit's own
server (``st.App``, frontend/served.py): a request without the login cookie gets the login form,
a 401 or a refused WebSocket, and reaches nothing of Streamlit. The right pass phrase sets the
cookie. Request bodies are capped here as well, from their declared length, before anyone reads
them. ``make serve`` prints the phrase at start.
"""
from __future__ import annotations

import hmac
import html
import os
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qs

from starlette.middleware import Middleware

import settings
from frontend.texts import LANGUAGES

PASS_PHRASE_VARIABLE = "SKIN_PASS_PHRASE"
LOGIN_PATH = "/_skin/login"
COOKIE_NAME = "skin_access"
# The login form's body is one short field; anything longer is not a person typing a phrase.
LOGIN_BODY_LIMIT = 1024
# Room for the multipart framing around an upload at the limit.
MULTIPART_MARGIN_MB = 1
PHRASE_FIELD = "phrase"
BODY_METHODS = {"POST", "PUT", "PATCH"}

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def new_pass_phrase() -> str:
    """Easy to type on a phone, hard to guess: three groups of six hex digits (72 bits)."""
    return "-".join(secrets.token_hex(3) for _ in range(3))


def phrase_matches(typed: str, expected: str) -> bool:
    return hmac.compare_digest(typed.strip().lower().encode(), expected.encode())


def login_form(wrong: bool) -> bytes:
    """The one page a visitor without the cookie sees, in every language the page speaks."""
    parts = []
    for texts in LANGUAGES.values():
        error = f'<p class="wrong">{html.escape(texts.pass_phrase_wrong)}</p>' if wrong else ""
        parts.append(f"<h1>{html.escape(texts.title)}</h1>{error}"
                     f"<label>{html.escape(texts.pass_phrase_label)}</label>")
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1"><title>SKIN</title>'
        "<style>body{font-family:sans-serif;max-width:28em;margin:2em auto;padding:0 1em}"
        "h1{font-size:1.2em}.wrong{color:#b00}input,button{font-size:1.2em;width:100%;"
        "margin:.4em 0;box-sizing:border-box}</style></head><body>"
        f'<form method="post" action="{LOGIN_PATH}">{"".join(parts)}'
        f'<input name="{PHRASE_FIELD}" type="password" autocomplete="off" autofocus>'
        f'<button type="submit">OK / 确定</button></form></body></html>').encode()


class PassPhraseGate:
    """ASGI middleware: the login form at LOGIN_PATH, and nothing else without its cookie."""

    def __init__(self, app: ASGIApp, phrase: str, body_limit: int) -> None:
        self.app = app
        self.phrase = phrase
        self.body_limit = body_limit
        # One per start, like the phrase: a restart logs every phone out.
        self.cookie = secrets.token_urlsafe(32)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):  # lifespan
            await self.app(scope, receive, send)
            return
        if scope["type"] == "http" and scope["path"] == LOGIN_PATH:
            await self.login(scope, receive, send)
        elif not self.admitted(scope):
            await self.refuse(scope, send)
        elif scope["type"] == "http" and (problem := self.body_problem(scope)):
            await respond(send, *problem)
        else:
            await self.app(scope, receive, send)

    def admitted(self, scope: Scope) -> bool:
        cookie = SimpleCookie()
        try:
            cookie.load(header(scope, b"cookie"))
        except CookieError:
            return False
        given = cookie.get(COOKIE_NAME)
        return given is not None and hmac.compare_digest(given.value.encode(), self.cookie.encode())

    def body_problem(self, scope: Scope) -> tuple[int, bytes] | None:
        """Why a request's body is refused unread: only declared lengths, within the cap. A body
        sent in chunks could not be weighed before it is read."""
        if header(scope, b"transfer-encoding"):
            return 411, b"send a Content-Length"
        length = header(scope, b"content-length")
        if scope["method"] in BODY_METHODS and not length.isdigit():
            return 411, b"send a Content-Length"
        if length.isdigit() and int(length) > self.body_limit:
            return 413, b"the body is larger than the page accepts"
        return None

    async def refuse(self, scope: Scope, send: Send) -> None:
        if scope["type"] == "websocket":
            # Closing before accepting refuses the handshake (HTTP 403): no session, no uploads.
            await send({"type": "websocket.close", "code": 1008})
        elif scope["method"] in ("GET", "HEAD"):
            await respond(send, 303, b"", [(b"location", LOGIN_PATH.encode())])
        else:
            await respond(send, 401, b"type the pass phrase first")

    async def login(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await respond(send, 200, login_form(wrong=False), html_page())
            return
        length = header(scope, b"content-length")
        if not length.isdigit() or int(length) > LOGIN_BODY_LIMIT:
            await respond(send, 413, b"the login form's body is one short field")
            return
        body = await read_body(receive, int(length))
        typed = parse_qs(body.decode(errors="replace")).get(PHRASE_FIELD, [""])[0]
        if not phrase_matches(typed, self.phrase):
            await respond(send, 401, login_form(wrong=True), html_page())
            return
        # Secure: phone mode is HTTPS only. Strict: no other site's page can send it along.
        cookie = f"{COOKIE_NAME}={self.cookie}; Path=/; HttpOnly; Secure; SameSite=Strict"
        await respond(send, 303, b"", [(b"location", b"/"), (b"set-cookie", cookie.encode())])


def header(scope: Scope, name: bytes) -> str:
    """The request's header ``name`` (several joined), or ''."""
    return ", ".join(value.decode("latin-1") for key, value in scope["headers"] if key.lower() == name)


def html_page() -> list[tuple[bytes, bytes]]:
    return [(b"content-type", b"text/html; charset=utf-8"), (b"cache-control", b"no-store")]


async def read_body(receive: Receive, limit: int) -> bytes:
    body = b""
    while len(body) <= limit:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    return body[:limit]


async def respond(send: Send, status: int, body: bytes,
                  headers: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = headers or [(b"content-type", b"text/plain; charset=utf-8")]
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def request_body_limit() -> int:
    """The largest body phone mode's gate lets through to Streamlit: an upload at the limit, and
    the multipart framing around it (Streamlit allows itself the same margin)."""
    return (settings.UPLOAD_LIMIT_MB + MULTIPART_MARGIN_MB) * 2**20


def gate_from_env(body_limit: int, environ: MutableMapping[str, str] = os.environ) -> list[Middleware]:
    """The middleware for ``st.App``: the gate when a pass phrase is set (phone mode), else none."""
    phrase = environ.get(PASS_PHRASE_VARIABLE)
    return [Middleware(PassPhraseGate, phrase=phrase, body_limit=body_limit)] if phrase else []
