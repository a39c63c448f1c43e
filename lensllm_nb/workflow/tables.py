"""The tables notebooks 02–03 and the comparison widget show, built from the engine.

* :func:`ranking_table` — the prediction engine's candidates best first, with the
  interval, ``p_best``, the expected regret and (when measured) the true loss;
* :func:`law_fit_table` — per-curve law fits (an overlay, not the prediction),
  with a non-identified transition size D* shown as missing plus the reason;
* :func:`lensllm_note` — what the LensLLM term is in a law fit and in the ``lensllm`` method;
* :func:`compare_methods` — every selection method at the notebook's budget,
  with its metrics from the benchmark protocol (:func:`~lensllm_nb.analysis.protocol.run_benchmark`);
* :func:`published_comparison` — notebook 04's figures next to the published ones.

Model names stay plain strings; pandas escapes them in HTML, ``utils.safe_output`` elsewhere.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..analysis.protocol import run_benchmark
from ..analysis.selection import LENSLLM_NOTES, LENSLLM_VARIANT, make_selector
from ..errors import ConfigError

__all__ = ["ranking_table", "law_fit_table", "phase_table", "compare_methods", "protocol_ratio",
           "published_comparison", "lensllm_note"]

_COMPARISON_COLUMNS = ["method", "chosen", "pearson", "relacc", "spearman", "regret", "cost_fraction"]


def ranking_table(predictions, truth=None) -> pd.DataFrame:
    """The engine's candidates best first, with the truth when it is known.

    Parameters
    ----------
    predictions : CandidatePredictions
        The result of :func:`lensllm_nb.analysis.predict.predict_candidates`.
    truth : pandas.Series, optional
        model -> measured loss at the target (e.g. ``PreparedCurves.truth``).

    Returns
    -------
    pandas.DataFrame
        rank, model, predicted, low, high, p_best, expected_regret, and ``true``
        and ``true_rank`` when every candidate has a measured loss at the target.
    """
    table = predictions.frame.copy()
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    if truth is not None:
        true = pd.Series(truth).reindex(table["model"]).to_numpy(float)
        if np.isfinite(true).all():
            table["true"] = true
            table["true_rank"] = pd.Series(true).rank(method="min").astype(int).to_numpy()
    return table


def law_fit_table(fit, *, target) -> pd.DataFrame:
    """Per-curve law fits: error, D* (or why it is missing) and the law's own extrapolation.

    Parameters
    ----------
    fit : FitResult
        The result of :func:`lensllm_nb.analysis.curve_fits.fit_curves`.
    target : int
        Size the law is extrapolated to.

    Returns
    -------
    pandas.DataFrame
        model, law, rmse_log, d_star (NaN when not identified), d_star_note,
        law_predicted, law_low, law_high (90% interval); failed fits keep their
        row with the reason in ``d_star_note``. This is the law's own
        extrapolation, an overlay: the prediction is the engine's.
    """
    rows = []
    for record in fit.summary.to_dict("records"):
        law = fit.laws.get(record["model"])
        row = {"model": record["model"], "law": record["law"], "rmse_log": np.nan, "d_star": np.nan,
               "d_star_note": "", "law_predicted": np.nan, "law_low": np.nan, "law_high": np.nan}
        if law is None:
            row["d_star_note"] = f"fit failed: {record.get('reason', '')}"
        else:
            low, high = law.predict_interval([target], level=0.9)
            row.update(rmse_log=float(law.rmse_log_), law_predicted=float(law.predict([target])[0]),
                       law_low=float(low[0]), law_high=float(high[0]))
            # The law says when D* is not identified (1e-99 is an optimizer artefact).
            row["d_star"] = np.nan if law.d_star_ is None else float(law.d_star_)
            row["d_star_note"] = "" if law.d_star_ is not None else law.d_star_reason_
        rows.append(row)
    return pd.DataFrame(rows)


def phase_table(fit, sizes) -> pd.DataFrame:
    """Phase ("pre-power" or "power") each fitted law gives every measured size: models × sizes.

    A law whose D* is not identified calls every size "power" (see ``law_fit_table``).
    """
    phases = pd.DataFrame({model: law.phase(sizes) for model, law in fit.laws.items()}, index=list(sizes)).T
    phases.index.name = "model"
    phases.columns.name = "n_train"
    return phases


def protocol_ratio(sizes, *, max_train, target) -> int:
    """The protocol ratio r whose visible sizes (≤ target // r) are exactly those ≤ ``max_train``.

    Raises
    ------
    ConfigError
        When no integer ratio > 1 shows exactly those sizes.
    """
    ratio = int(target // max_train)
    larger = [n for n in sizes if n > max_train]
    if ratio > 1 and (not larger or target // ratio < larger[0]):
        return ratio
    raise ConfigError(f"`max_train` = {max_train:,} is no budget of the benchmark protocol for target "
                      f"{target:,} (sizes ≤ target // r for an integer r > 1); choose a size ≤ "
                      f"{target // 2:,} such as {max(n for n in sizes if n <= target // 2):,}.")


def compare_methods(curves, methods) -> pd.DataFrame:
    """Every method's pick at the budget of ``curves``, with the protocol's metrics.

    Parameters
    ----------
    curves : PreparedCurves
        The result of :func:`lensllm_nb.workflow.notebook_curves.prepare_curves`.
    methods : list of str
        Selection methods (see :data:`lensllm_nb.analysis.protocol.METHODS`).

    Returns
    -------
    pandas.DataFrame
        method, chosen, pearson, relacc, spearman, regret, cost_fraction. When a
        candidate has no measured loss at the target, the metrics are missing
        and only the picks and costs are given.
    """
    if len(curves.truth) == len(curves.models):
        ratio = protocol_ratio(curves.sizes, max_train=curves.max_train, target=curves.target)
        run = run_benchmark(curves.table, methods=methods, target=curves.target, ratios=[ratio],
                            dataset=curves.dataset)
        return run.results[_COMPARISON_COLUMNS].reset_index(drop=True)
    rows = []
    for method in methods:
        selector = make_selector(method).fit(curves.table, max_train=curves.max_train, target=curves.target)
        rows.append({"method": method, "chosen": selector.chosen_, "cost_fraction": selector.cost_fraction_})
    return pd.DataFrame(rows).reindex(columns=_COMPARISON_COLUMNS)


def published_comparison(results, published):
    """PearCorr and RelAcc of ours next to the published ones, per (dataset, method, ratio); None when none match.

    Parameters
    ----------
    results : pandas.DataFrame
        :attr:`~lensllm_nb.analysis.protocol.BenchmarkResult.results` of one or more sets.
    published : pandas.DataFrame
        :func:`lensllm_nb.analysis.published_curves.published` (dataset, method, metric, ratio, value).

    Returns
    -------
    pandas.DataFrame or None
        dataset, method, metric, ratio, published, ours, difference (clean index);
        None when `published` is empty or shares no (dataset, method, ratio) with `results`.
    """
    if published.empty or results.empty:
        return None
    paper = published.assign(dataset=published["dataset"].str.lower(), method=published["method"].str.lower(),
                             metric=published["metric"].map({"PearCorr": "pearson", "RelAcc": "relacc"}))
    ours = results.melt(id_vars=["dataset", "method", "ratio"], value_vars=["pearson", "relacc"],
                        var_name="metric", value_name="ours")
    both = paper.merge(ours, on=["dataset", "method", "metric", "ratio"], how="inner")
    if both.empty:
        return None
    both = both.rename(columns={"value": "published"})
    return both.assign(difference=both["ours"] - both["published"]).reset_index(drop=True)


def lensllm_note(ntk, law="lensllm") -> str:
    """Say what the LensLLM term is: in notebook 02's law fits and in the ``lensllm`` method.

    Parameters
    ----------
    ntk : dict or None
        The NTK features the fits use (:func:`~lensllm_nb.workflow.notebook_curves.stored_ntk`).
    law : str
        The law fitted as an overlay.
    """
    if not ntk:
        return LENSLLM_NOTES["rectified"] if law == "lensllm" else f"the {law} law has no NTK term"
    overlay = LENSLLM_NOTES["fitted_t"] if law == "lensllm" else f"the {law} law has no NTK term"
    return f"law fits: {overlay}; the `lensllm` method: {LENSLLM_NOTES[LENSLLM_VARIANT]}"
