"""The ``export`` command: a results store's tidy curves table as CSV or Parquet.

The store (a SQLite file or a database URL) is opened read-only: nothing is
created or changed, a file that is not a results store is refused untouched, and a
damaged SQLite file is exported as far as it can be read, with what could not be
read on stderr (exit status 1). The URL's password is masked in every output (and
in the run record: :func:`lensllm_nb.cli.main` masks every argument).
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..collection.store import ResultsStore, is_url, mask_url
from ..errors import ConfigError

__all__ = ["register"]


def register(subparsers) -> None:
    """Add the ``export`` command to `subparsers`."""
    parser = subparsers.add_parser(
        "export", help="write a store's tidy curves table to CSV or Parquet",
        description="Write the finished runs of a results store (read-only) as the tidy "
                    "curves table (model, dataset, n_train, seed, test_loss, ...).",
    )
    parser.add_argument("store", help="results store: a SQLite file or a database URL "
                                      "(postgresql://user@host/db)")
    parser.add_argument("--format", default="csv", choices=("csv", "parquet"))
    parser.add_argument("--out", default=None,
                        help="output file (default: STORE with .csv/.parquet; required for a URL)")
    parser.add_argument("--config", default="latest",
                        help="runs of a (model, dataset) run under several configs: 'latest' "
                             "(default: the config run last), 'all', or a config hash")
    parser.set_defaults(func=_export)


def _export(args) -> int:
    target = args.store
    if args.out is None and is_url(target):
        raise ConfigError(f"`--out` is needed to export the database `store` {mask_url(target)!r}; "
                          "pass e.g. --out curves.csv.")
    with ResultsStore(target, readonly=True) as store:
        out = Path(args.out) if args.out else store.path.with_suffix("." + args.format)
        written = store.export(out, format=args.format, config=args.config)
        rows = len(store.curves(args.config))
        unreadable, location = store.unreadable, store.location
    print(f"{written}\t{rows} rows")
    if unreadable:
        print(f"lensllm-nb export: warning: the store {location!r} is damaged; exported the "
              f"{rows} readable finished runs, could not read: {'; '.join(unreadable)}",
              file=sys.stderr)
        return 1
    return 0
