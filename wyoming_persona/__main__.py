"""Allow `python -m wyoming_persona`."""

from .cli import main

raise SystemExit(main())
