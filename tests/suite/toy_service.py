"""A toy service for the services-table test: its own folder plus one row in a table is all it takes."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--uri", default="tcp://127.0.0.1:10999")


def run(args: argparse.Namespace) -> int:
    return 0
