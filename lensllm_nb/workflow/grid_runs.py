"""One model's grid of fine-tuning runs: the settings it runs with and what the store holds.

Notebook 01 fine-tunes one model on nested subsets. Its settings come from
:func:`finetune_options` (a zoo candidate starts from the zoo's settings), and its
table of runs from :func:`grid_runs`, which reads the results store rather than the
runs of the current call, so a re-run whose runs were all stored shows the same
table. :func:`missing_runs` tells, without loading any weights, which runs a grid
would still have to make (the demo skips a candidate whose runs are all stored).

Sizes passed as ``full_sizes`` are labelled *ground truth (full run)*: they are the
full-data fine-tunes a selection is checked against, never an input to it.
"""

from __future__ import annotations

import pandas as pd

from ..collection import zoo
from ..collection.store import ResultsStore
from ..utils.provenance import config_hash

__all__ = ["finetune_options", "grid_runs", "missing_runs", "ROLE_SELECTION", "ROLE_TRUTH"]

ROLE_SELECTION = "selection"
ROLE_TRUTH = "ground truth (full run)"
_COLUMNS = ["role", "n_train", "seed", "status", "test_loss", "train_loss", "steps", "tokens", "flops",
            "wall_seconds", "device", "created_utc"]


def finetune_options(model, settings=None, **values) -> dict:
    """Return the `FineTuner` settings of a grid on `model`.

    Parameters
    ----------
    model : str
        The model; a ``"zoo/NAME"`` candidate starts from `lensllm_nb.collection.zoo.DEMO_SETTINGS`.
    settings : dict, optional
        Other FineTuner settings; not modified.
    **values
        Explicit settings (epochs, lr, ...), applied last.

    Returns
    -------
    dict
    """
    options = dict(zoo.DEMO_SETTINGS) if zoo.is_zoo_name(model) else {}
    options.update(settings or {})
    options.update(values)
    return options


def missing_runs(store, tuner, task, sizes, seeds) -> list:
    """Return the ``(seed, n_train)`` runs of a grid that `store` does not hold finished.

    Parameters
    ----------
    store : lensllm_nb.collection.store.ResultsStore
    tuner : lensllm_nb.collection.finetune.FineTuner
        Its settings make the config hash runs are stored under (no weights are loaded).
    task : lensllm_nb.collection.data.TaskData
    sizes, seeds : list of int

    Returns
    -------
    list of tuple
    """
    chash = config_hash(tuner.config(task))
    return [(seed, n) for seed in seeds for n in sizes
            if not store.is_done(str(tuner.model), task.name, n, seed, chash)]


def grid_runs(store, tuner, task, sizes, seeds, *, full_sizes=()) -> pd.DataFrame:
    """Return the stored runs of a grid, one row per run, labelled by role.

    Parameters
    ----------
    store : str, Path or lensllm_nb.collection.store.ResultsStore
    tuner : lensllm_nb.collection.finetune.FineTuner
    task : lensllm_nb.collection.data.TaskData
    sizes : list of int
        Selection sizes (role ``selection``).
    seeds : list of int
    full_sizes : list of int
        Full-data sizes (role ``ground truth (full run)``).

    Returns
    -------
    pandas.DataFrame
        Columns role, n_train, seed, status, test_loss, ... sorted by n_train and seed;
        failed runs included.
    """
    opened = store if isinstance(store, ResultsStore) else ResultsStore(store)
    runs = opened.runs()
    chash = config_hash(tuner.config(task))
    wanted = set(int(n) for n in [*sizes, *full_sizes])
    runs = runs[(runs["model"] == str(tuner.model)) & (runs["dataset"] == task.name)
                & (runs["config_hash"] == chash) & runs["n_train"].isin(wanted)
                & runs["seed"].isin([int(s) for s in seeds])]
    truth = set(int(n) for n in full_sizes)
    runs = runs.assign(role=[ROLE_TRUTH if int(n) in truth else ROLE_SELECTION for n in runs["n_train"]])
    return runs[[c for c in _COLUMNS if c in runs.columns]].sort_values(["n_train", "seed"]).reset_index(drop=True)
