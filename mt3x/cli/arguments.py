"""Command-line options several tools share (mt3x's and the separation / tagging packages')."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_ood_arguments(parser: argparse.ArgumentParser) -> None:
    """`--ood-data DIR` and `--ood-split SPLIT`: a second, out-of-domain Slakh-layout dataset
    (e.g. `mt3x-data build --preset ood-eval`) scored the same way and printed side by side."""
    parser.add_argument("--ood-data", type=Path, default=None,
                        help="out-of-domain folder in Slakh2100 layout (e.g. `mt3x-data build "
                        "--preset ood-eval`), scored and printed side by side")
    parser.add_argument("--ood-split", default="test", help="split of --ood-data (default test)")
