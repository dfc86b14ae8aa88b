"""The control API's typed application state, shared by app.py and the studio's views."""

from __future__ import annotations

from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web

from ..personas import PersonaManager
from .metrics import ApiMetrics
from .settings import ApiSettings

if TYPE_CHECKING:
    pass

MANAGER = web.AppKey("manager", PersonaManager)
SETTINGS = web.AppKey("settings", ApiSettings)
METRICS = web.AppKey("metrics", ApiMetrics)
HTTP = web.AppKey("http", aiohttp.ClientSession)
OPENAPI = web.AppKey("openapi", bytes)
STUDIO = web.AppKey("studio", "Studio")
INGRESS = web.AppKey("ingress", bool)
"""True for the application behind Home Assistant's ingress port."""
