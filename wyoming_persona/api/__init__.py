"""Control plane: the HTTP API (personas, active persona, reload, health, metrics) and the MQTT select."""

from .app import make_app
from .settings import ApiSettings, MqttSettings, ServiceTarget

__all__ = ["ApiSettings", "MqttSettings", "ServiceTarget", "make_app"]
