"""Who is asking: a bearer token, a loopback peer, or Home Assistant's ingress proxy; and the studio's
session, without which nothing is written.

- **token**: with `--token`, every request on the API port carries `Authorization: Bearer <token>`
  (scripts, `rest_command`, the studio page opened directly, which asks for the token once).
- **local**: without a token only loopback peers are served (`make run`). A web page in the user's
  browser is a loopback peer too, so the studio's writes also need a session: loading the studio
  page sets a cookie (HttpOnly, SameSite=Strict) and puts a token derived from it into the page; a
  write must send that token in a header, which no other site can read or send (it would need CORS,
  which this API never grants). The Host header must be a loopback name, so a DNS-rebinding page
  cannot read the token either.
- **ingress**: the ingress port answers only the Supervisor's address. The Supervisor forwards a
  request only with a valid ingress session of a user Home Assistant signed in; the studio's writes
  still send the page's token, so another page cannot make the user's browser write.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass, field
from enum import StrEnum

from aiohttp import web

COOKIE = "wyoming_persona_studio"
HEADER = "X-Studio-Session"
INGRESS_SESSION = "ingress"


class Access(StrEnum):
    TOKEN = "token"
    LOCAL = "local"
    INGRESS = "ingress"
    ANONYMOUS = "anonymous"
    """Only the studio page and its files, which hold no data (the page asks for the token)."""


ACCESS = web.RequestKey("access", Access)


@dataclass
class Sessions:
    """Studio tokens: an HMAC of the session cookie (or of `ingress`) under a secret of this process.

    Nothing is stored: a restart makes every open page reload (its writes get 403 until then).
    """

    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    def token(self, session: str) -> str:
        return hmac.new(self.secret, session.encode(), hashlib.sha256).hexdigest()

    def valid(self, session: str, token: str) -> bool:
        return bool(session) and hmac.compare_digest(self.token(session), token)


def new_session() -> str:
    return secrets.token_urlsafe(32)


def same_peer(remote: str | None, wanted: str) -> bool:
    """True if the request's peer is the address `wanted` (an IPv4-mapped IPv6 peer counts)."""
    if remote is None:
        return False
    try:
        address = ipaddress.ip_address(remote.split("%", 1)[0])
        expected = ipaddress.ip_address(wanted)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address == expected


def loopback_host(request: web.Request) -> bool:
    """The Host header names this machine (127.0.0.1, [::1], localhost): not a rebound DNS name."""
    host = request.host
    if host.startswith("["):
        name = host[1 : host.find("]")] if "]" in host else host
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def session_problem(request: web.Request, sessions: Sessions) -> str | None:
    """Why this request may not write through the studio, or None when it may."""
    access = request[ACCESS]
    if access is Access.TOKEN:
        return None  # the bearer token is the session (a browser never sends one by itself)
    given = request.headers.get(HEADER, "")
    if access is Access.INGRESS:
        return None if sessions.valid(INGRESS_SESSION, given) else _RELOAD
    if access is Access.LOCAL:
        if not loopback_host(request):
            return f"Host {request.host!r} is not this machine: open the studio at http://127.0.0.1"
        return None if sessions.valid(request.cookies.get(COOKIE, ""), given) else _RELOAD
    return "a bearer token is needed"


_RELOAD = f"no valid studio session ({HEADER}): reload the studio page"
