"""Who may use an HTTP endpoint: bearer tokens compared in constant time, and loopback addresses.

Shared by the control API (`api/`) and the Ollama-compatible API (`agent/ollama_api.py`).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress


def token_matches(authorization: str, token: str) -> bool:
    """`Bearer <token>` in constant time: both sides are hashed first, so even the length does not leak."""
    scheme, _, given = authorization.partition(" ")
    given_digest = hashlib.sha256(given.strip().encode("utf-8", "surrogateescape")).digest()
    token_digest = hashlib.sha256(token.encode("utf-8")).digest()
    return hmac.compare_digest(given_digest, token_digest) and scheme.lower() == "bearer"


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (`localhost`, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name or a wildcard: assume it is reachable from outside
