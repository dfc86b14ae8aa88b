"""Wyoming voice services with a personality."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("wyoming-persona")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
