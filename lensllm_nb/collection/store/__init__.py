"""Results store: one row per fine-tuning run, safe for concurrent writers.

A grid of runs can take hours, be killed midway and be written by several processes
at once. :class:`ResultsStore` gives one interface over a SQLite file (one machine)
and a database URL (PostgreSQL, many machines), with the same schema and the same
idempotent upsert keyed by (model, dataset, n_train, seed, config_hash).

Details and derivations: docs/METHODS.md, section ``lensllm_nb.collection.store``.
"""

from .location import check_dask_store, is_url, mask_url, mask_urls
from .results import ResultsStore
from .schema import COLUMNS, CURVE_COLUMNS, KEY_COLUMNS

__all__ = ["ResultsStore", "KEY_COLUMNS", "COLUMNS", "CURVE_COLUMNS",
           "is_url", "mask_url", "mask_urls", "check_dask_store"]
