"""Fit one scaling law to every curve of a tidy curves table.

This is the table level: it sits above the law estimators (:mod:`lensllm_nb.analysis.laws`)
and the numeric engine (:mod:`lensllm_nb.analysis.fitting`), which know nothing of tables.
It validates the table, averages seeds, keeps the visible sizes and hands the
curves to the engine in chunks, so that memory stays flat however many models the
table holds (the engine's grid scan allocates a few arrays of curves × 30 × 25 ×
sizes; 512 curves at a time keep that under ~100 MB).

One `FitResult` covers one dataset: a model fitted on FLAN and on Gigaword has two
different laws, so a table with several datasets needs ``dataset=``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..utils.safe_output import plain_value
from .curves import MIN_POSITIVE_SIZES, one_dataset, rising_reason, validate_curves
from .laws import make_law

__all__ = ["FitResult", "fit_curves", "CHUNK_SIZE"]

# Curves per engine call: large enough that numpy's batching pays off (the widget
# refits 30 curves in one call), small enough that the grid scan stays ~100 MB.
CHUNK_SIZE = 512


@dataclass
class FitResult:
    """Laws fitted to every curve of one dataset of a table.

    Attributes
    ----------
    dataset : str
        The dataset the curves come from.
    laws : dict
        Model name -> fitted law (only successful fits).
    summary : pandas.DataFrame
        One row per model: model, dataset, law, fitted parameters, rmse_log,
        d_star, n_points, status ('ok' or 'failed'), reason (of a failure) and missing
        (each non-identified parameter, shown as NaN, with why).
    """

    dataset: str
    laws: dict
    summary: pd.DataFrame


def fit_curves(table, law="lensllm", *, max_train=None, dataset=None, models=None, chunk_size=CHUNK_SIZE,
               **law_kwargs) -> FitResult:
    """Fit one law to every curve of one dataset of a tidy table.

    Parameters
    ----------
    table : pandas.DataFrame
        Tidy curves table (:mod:`lensllm_nb.analysis.curves`). Seeds are averaged.
    law : {"lensllm", "rectified", "vanilla"}
        The law to fit.
    max_train : int, optional
        Fit only sizes ≤ ``max_train`` (the visible part of each curve).
    dataset : str, optional
        The dataset to fit; needed when the table holds several.
    models : str or list of str, optional
        Restrict to these models (one name is one model, not its letters).
    chunk_size : int
        Curves per engine call; bounds memory, never changes a result.
    **law_kwargs
        Settings of the law (see :mod:`lensllm_nb.analysis.laws`). ``ntk`` may be a dict
        model -> NTK features for the LensLLM law.

    Returns
    -------
    FitResult
        A curve with fewer than 3 visible positive sizes is reported as failed,
        not dropped.

    Raises
    ------
    ConfigError
        For a bad argument, or a table with several datasets and no ``dataset``.
    CurveDataError
        When ``table`` is not a valid curves table.
    """
    max_train = _check_positive_int(max_train, "max_train", optional=True)
    chunk_size = _check_positive_int(chunk_size, "chunk_size")
    df, dataset = _select(table, dataset, models)
    visible = df[df["n_train"] > 0]
    if max_train is not None:
        visible = visible[visible["n_train"] <= max_train]
    ntk = law_kwargs.pop("ntk", None)
    template = make_law(law, **law_kwargs)
    names, sizes, losses = _seed_means(visible, sorted(df["model"].unique()))
    rows, fitted = [], {}
    for start in range(0, len(names), chunk_size):
        chunk = slice(start, start + chunk_size)
        rows.extend(_fit_chunk(template, law, dataset, names[chunk], sizes[chunk], losses[chunk], ntk, fitted))
    summary = pd.DataFrame(rows)
    return FitResult(dataset=dataset, laws=fitted, summary=summary)


def _check_positive_int(value, name, *, optional=False):
    """Return ``value`` as an int, or raise `ConfigError` naming the argument."""
    if value is None and optional:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ConfigError(f"`{name}` must be a positive integer size, got {plain_value(value)!r}; e.g. {name}=25600.")
    return int(value)



def _select(table, dataset, models):
    """Validate `table` and keep one dataset and the chosen models."""
    if not isinstance(table, pd.DataFrame):
        raise ConfigError(f"`table` must be a pandas DataFrame of curves, got {type(table).__name__}; "
                          "read one with lensllm_nb.analysis.curves.read_curves(path).")
    df = validate_curves(table, source=table.attrs.get("source", "<table>"))
    df, dataset = one_dataset(df, dataset)
    if models is not None:
        models = [models] if isinstance(models, str) else list(models)
        unknown = sorted(set(map(str, models)) - set(df["model"]))
        if unknown or not models:
            raise ConfigError(f"`models` contains names not in dataset {dataset!r}: {unknown[:5]}; "
                              f"choose from {sorted(df['model'].unique())[:10]}.")
        df = df[df["model"].isin(models)]
    return df, dataset


def _seed_means(visible, all_models):
    """Per model: visible sizes and seed-mean losses (empty arrays when none are visible)."""
    means = visible.groupby(["model", "n_train"], sort=True)["test_loss"].mean().reset_index()
    model_col = means["model"].to_numpy()
    starts = np.flatnonzero(np.r_[True, model_col[1:] != model_col[:-1]]) if len(model_col) else np.array([], int)
    bounds = dict(zip(model_col[starts], zip(starts, np.r_[starts[1:], len(model_col)])))
    size_col = means["n_train"].to_numpy(dtype=float)
    loss_col = means["test_loss"].to_numpy(dtype=float)
    sizes, losses = [], []
    for model in all_models:
        lo, hi = bounds.get(model, (0, 0))
        sizes.append(size_col[lo:hi])
        losses.append(loss_col[lo:hi])
    return list(all_models), sizes, losses


def _fit_chunk(template, law, dataset, names, sizes, losses, ntk, fitted) -> list:
    """Fit one chunk of curves; add successful laws to `fitted`; return summary rows."""
    rows = [None] * len(names)
    usable = []
    for i, (d, loss) in enumerate(zip(sizes, losses)):
        reason = _unfittable(d, loss)
        if reason:
            rows[i] = {"model": names[i], "dataset": dataset, "law": law, "n_points": len(d),
                       "status": "failed", "reason": reason}
        else:
            usable.append(i)
    if usable:
        ntk_list = None if ntk is None else [ntk.get(names[i]) if isinstance(ntk, dict) else ntk for i in usable]
        laws = template._fit_many([sizes[i] for i in usable], [losses[i] for i in usable],
                                  names=[names[i] for i in usable], ntk=ntk_list)
        for i, fitted_law in zip(usable, laws):
            rows[i] = _summary_row(fitted_law, names[i], dataset, law, len(sizes[i]), fitted)
    return rows


def _unfittable(sizes, losses) -> str:
    """Why a curve cannot be fitted ('' when it can): too few sizes, or a rising loss."""
    if len(sizes) < MIN_POSITIVE_SIZES:
        return f"only {len(sizes)} visible positive size(s); at least {MIN_POSITIVE_SIZES} needed"
    # Every law of the family falls with D: a rising curve would be fitted as a
    # flat line and reported "ok" with a meaningless prediction.
    return rising_reason(sizes, losses)


def _summary_row(fitted_law, model, dataset, law, n_points, fitted) -> dict:
    """One summary row; a successful law is also kept in `fitted`."""
    row = {"model": model, "dataset": dataset, "law": law, "n_points": n_points}
    if not fitted_law.success_:
        row.update(status="failed", reason=fitted_law.reason_)
        return row
    fitted[model] = fitted_law
    # Non-identified parameters (a pre-learned term at its bound, say 1e-99) are missing,
    # with the law's reason, so no table built from the summary shows an artefact.
    params, missing = fitted_law.reported_params()
    row.update({name: np.nan if value is None else value for name, value in params.items()})
    row.update(rmse_log=fitted_law.rmse_log_, status="ok", reason="",
               missing="; ".join(f"{name}: {why}" for name, why in missing.items()))
    return row
