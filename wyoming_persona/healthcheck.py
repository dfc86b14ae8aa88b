"""Container health check: ask a Wyoming service to describe itself; exit 0 on `info`, 1 otherwise.

Run by each add-on's Docker HEALTHCHECK (`python3 -m wyoming_persona.healthcheck tcp://127.0.0.1:PORT`).
An open port is not enough: a server whose event loop is stuck still accepts connections, but does not
answer `describe` (which Home Assistant sends with a 1 s timeout before every use).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from wyoming.client import AsyncClient
from wyoming.info import Describe, Info

DEFAULT_TIMEOUT = 5.0


async def describe(uri: str) -> Info:
    """The service's Info; OSError or ValueError when it does not give one (the caller sets a timeout)."""
    async with AsyncClient.from_uri(uri) as client:
        await client.write_event(Describe().event())
        while True:
            event = await client.read_event()
            if event is None:
                raise ValueError("connection closed before an info event")
            if Info.is_type(event.type):
                return Info.from_event(event)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wyoming_persona.healthcheck", description=__doc__)
    parser.add_argument("uri", help="the service, e.g. tcp://127.0.0.1:10300")
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds in all (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    try:
        asyncio.run(asyncio.wait_for(describe(args.uri), args.timeout))
    except TimeoutError:
        print(f"unhealthy: {args.uri} gave no info within {args.timeout} s", file=sys.stderr)
        return 1
    except (OSError, ValueError) as err:
        print(f"unhealthy: {args.uri}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
