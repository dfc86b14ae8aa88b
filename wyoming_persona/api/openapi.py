"""The API's OpenAPI description, kept as a data file (openapi.json) beside this module."""

from __future__ import annotations

import json
from importlib.resources import files


def load_openapi() -> bytes:
    """The JSON bytes served at /api/openapi.json (parsed once to fail fast on a broken file)."""
    raw = files(__package__).joinpath("openapi.json").read_bytes()
    json.loads(raw)
    return raw
