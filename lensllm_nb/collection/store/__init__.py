"""Results store: one row per fine-tuning run, safe for concurrent writers.

A grid of runs (models × subset sizes × seeds) can take hours and be killed midway,
and several processes or machines (a Dask cluster, papermill workers) may write at
once. :class:`ResultsStore` gives one interface over two backends:

* a **SQLite file** (default; one machine): WAL mode, short ``BEGIN IMMEDIATE``
  writes with retries on ``database is locked``; refused on a network filesystem
  and for Dask workers on other hosts, where SQLite's locking is unsafe;
* a **database URL** (many machines; PostgreSQL is the tested server) through
  SQLAlchemy, with lost connections retried until ``timeout``.

Both keep the same schema and the same idempotent upsert keyed by (model, dataset,
n_train, seed, config_hash), so a resumed grid can ask :meth:`ResultsStore.is_done`
and a retried job never duplicates a row. A run that fails is stored with
``status='failed'`` and its error; a later successful run with the same key
replaces it, while a failure never overwrites a finished ('ok') run. Every row is
validated before anything is written, so bad input leaves the store unchanged.

Example
-------
>>> from lensllm_nb.collection.store import ResultsStore
>>> with ResultsStore("results.db") as store:               # doctest: +SKIP
...     store.upsert({"model": "gpt2", "dataset": "zoo", "n_train": 64, "seed": 0,
...                   "config_hash": "ab12", "status": "ok", "test_loss": 2.31})
...     table = store.curves()
>>> ResultsStore("postgresql://lensllm@dbhost/lensllm")      # doctest: +SKIP
"""

from .location import check_dask_store, is_url, mask_url, mask_urls
from .results import ResultsStore
from .schema import COLUMNS, CURVE_COLUMNS, KEY_COLUMNS

__all__ = ["ResultsStore", "KEY_COLUMNS", "COLUMNS", "CURVE_COLUMNS",
           "is_url", "mask_url", "mask_urls", "check_dask_store"]
