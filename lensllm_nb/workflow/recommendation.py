"""The answer of a selection, first: which model to fine-tune, at what cost, and how right.

A report index opens with the answer of its grid: the recommended model, its
predicted full-data loss with an interval and ``p_best``, the FLOPs spent relative to
fine-tuning every candidate on the target and, when full runs exist, the check
against them; the same facts go to ``summary.json``.

Details and derivations: docs/METHODS.md, section ``lensllm_nb.workflow.recommendation``.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from ..analysis.metrics import budget_warning, relacc, top1_regret
from ..analysis.predict import DEFAULT_METHOD, predict_candidates
from ..analysis.progressive import ProgressiveSelector
from ..analysis.selection import make_selector
from ..errors import ConfigError
from ..utils.safe_output import escape_html
from .notebook_curves import choose_dataset, choose_models, load_curves

__all__ = ["SelectionAnswer", "answer_selection", "grid_answer", "SELECT_NOTEBOOK", "SUMMARY_KEYS"]

# The notebook whose job makes a grid "select a model".
SELECT_NOTEBOOK = "03_select_models"
# Free baselines shown beside the pick: what a choice without fine-tuning would give.
BASELINES = {"zeroshot": "the best zero-shot loss", "modelsize": "the largest model"}
# The keys of ``summary.json`` (issue 8's contract), in order.
SUMMARY_KEYS = ("chosen", "method", "predicted", "low", "high", "p_best", "cost_fraction", "candidates",
                "selection_max_train", "target", "true_rank", "relacc")


@dataclass(frozen=True)
class SelectionAnswer:
    """A selection's answer and its check against the full runs.

    Attributes
    ----------
    prediction : lensllm_nb.analysis.predict.CandidatePredictions
        Every candidate's predicted loss at ``target``, best first.
    curves : pandas.DataFrame
        The candidates' mean loss per size (model, n_train, test_loss), full runs included.
    truth : pandas.Series
        Mean loss of each candidate's full run at ``target`` (ground truth); empty
        when some candidate has none.
    progressive : dict or None
        Progressive selection's pick, cost fraction and check, when it was run.
    baselines : dict
        Free baselines that could run on the table (``zeroshot``, ``modelsize``):
        name -> their pick and its check.
    budget : str or None
        The line saying the visible sizes cost more than 1/8 of fine-tuning every
        candidate on the target (:func:`lensllm_nb.analysis.metrics.budget_warning`).
    """

    prediction: object
    curves: pd.DataFrame
    truth: pd.Series
    progressive: dict | None = None
    baselines: dict = field(default_factory=dict)
    budget: str | None = None

    @property
    def checked(self) -> bool:
        """Whether every candidate has a full run at the target to check against."""
        return len(self.truth) == len(self.prediction.frame)

    def check(self, model) -> dict:
        """True rank (1 = best), RelAcc and regret of picking `model`; None without full runs."""
        if not self.checked:
            return {"true_rank": None, "relacc": None, "regret": None}
        true = self.truth.to_numpy()
        chosen = float(self.truth[model])
        return {"true_rank": int((true < chosen).sum()) + 1, "relacc": relacc(chosen, true),
                "regret": top1_regret(chosen, true)}

    def summary(self) -> dict:
        """The ``summary.json`` contract of issue 8, exactly these keys (strict-JSON-ready).

        ``chosen``, ``method``, ``predicted``, ``low``, ``high``, ``p_best``,
        ``cost_fraction``, ``candidates``, ``selection_max_train``, ``target``,
        ``true_rank`` and ``relacc`` (the last two None without full runs).
        """
        facts = self.facts()
        return {key: facts[key] for key in SUMMARY_KEYS}

    def facts(self) -> dict:
        """Everything the index shows: the summary plus the pick's reason, dataset, level, regret, best model,
        progressive."""
        pred = self.prediction
        # The pick's own row: it can differ from the lowest prediction (the reason says why).
        row = pred.frame.set_index("model").loc[pred.chosen]
        return {
            "chosen": str(pred.chosen), "chosen_reason": str(pred.chosen_reason), "method": str(pred.method),
            "dataset": str(pred.dataset),
            "predicted": float(row["predicted"]), "low": _finite(row["low"]), "high": _finite(row["high"]),
            "level": float(pred.level), "p_best": _finite(row["p_best"]),
            "cost_fraction": float(pred.cost_fraction), "candidates": int(len(pred.frame)),
            "selection_max_train": int(pred.max_train), "target": int(pred.target),
            **self.check(pred.chosen),
            "best_true": str(self.truth.idxmin()) if self.checked else None,
            "inside": self.inside(),
            "progressive": self.progressive,
            "baselines": self.baselines,
        }

    def inside(self):
        """How many full runs lie inside their predicted intervals; None without full runs."""
        if not self.checked:
            return None
        frame = self.prediction.frame.set_index("model")
        truth = self.truth.loc[frame.index]
        return int(((frame["low"] <= truth) & (truth <= frame["high"])).sum())

    def to_html(self) -> str:
        """The answer section of an index page (every value escaped, the figure embedded)."""
        facts = self.facts()
        return _ANSWER_HTML.format(
            chosen=escape_html(facts["chosen"]), dataset=escape_html(facts["dataset"]),
            reason=escape_html(facts["chosen_reason"]), predicted=_loss(facts["predicted"]), level=f"{facts['level']:.0%}",
            interval=_interval(facts["low"], facts["high"]),
            p_best="n/a" if facts["p_best"] is None else f"{facts['p_best']:.2f}",
            method=escape_html(facts["method"]), target=f"{facts['target']:,}",
            max_train=f"{facts['selection_max_train']:,}", candidates=facts["candidates"],
            cost=f"{facts['cost_fraction']:.1%}", check=_check_html(facts),
            budget=f'<p class="answer-budget">{escape_html(self.budget)}</p>' if self.budget else "",
            progressive=_progressive_html(facts["progressive"], facts["target"]),
            table=self._table_html(), figure=_figure_html(self.figure(), self.figure(narrow=True)),
        )

    def figure(self, *, narrow=False):
        """The candidates' measured curves with each prediction (and full run) at the target.

        See :func:`lensllm_nb.workflow.plots.recommendation.plot_recommendation`
        (`narrow`: the layout for a phone-width screen).
        """
        from .plots.recommendation import plot_recommendation

        return plot_recommendation(self, narrow=narrow)

    def _table_html(self) -> str:
        rows = []
        for row in self.prediction.frame.to_dict("records"):
            true = self.truth.get(row["model"]) if self.checked else None
            rows.append(
                f"<tr><td>{escape_html(row['model'])}</td><td>{_loss(row['predicted'])}</td>"
                f"<td>{_interval(_finite(row['low']), _finite(row['high']))}</td><td>{row['p_best']:.2f}</td>"
                f"<td>{'' if true is None else _loss(true)}</td>"
                f"<td>{'' if true is None else self.check(row['model'])['true_rank']}</td></tr>"
            )
        return "\n".join(rows)


def answer_selection(table, *, max_train, target=None, dataset=None, method=None, models=None,
                     progressive_budget=None) -> SelectionAnswer:
    """Predict every candidate at `target` from sizes ≤ `max_train` and check against full runs.

    Parameters
    ----------
    table : pandas.DataFrame
        Tidy curves table; not modified. Rows above `max_train` are read only as
        ground truth at `target`.
    max_train : int
        The selection budget: the largest size the prediction sees.
    target : int, optional
        Size whose loss is predicted; default the largest size in the table.
    dataset : str, optional
        Required when the table holds several datasets.
    method : str, optional
        Prediction method; default `lensllm_nb.analysis.predict.DEFAULT_METHOD`.
    models : list of str, optional
        Restrict to these candidates.
    progressive_budget : float, optional
        Also run progressive selection on the sizes below `target` with this FLOPs budget.

    Returns
    -------
    SelectionAnswer
    """
    pred = predict_candidates(table, max_train=max_train, target=target, method=method or DEFAULT_METHOD,
                              dataset=dataset, models=models)
    rows = table[(table["dataset"] == pred.dataset) & table["model"].isin(pred.frame["model"])]
    curves = rows.groupby(["model", "n_train"], as_index=False)["test_loss"].mean()
    truth = curves[curves["n_train"] == pred.target].set_index("model")["test_loss"]
    truth = truth.reindex(pred.frame["model"]).dropna()
    answer = SelectionAnswer(prediction=pred, curves=curves, truth=truth,
                             budget=budget_warning(rows, max_train=pred.max_train, target=pred.target))
    answer = replace(answer, baselines=_baselines(rows, answer, pred.max_train, pred.target))
    if progressive_budget is None:
        return answer
    return replace(answer, progressive=_progressive(rows, answer, pred.target, progressive_budget))


def grid_answer(results):
    """The answer of a batch whose grid selects a model, or None.

    Looks for a finished ``03_select_models`` job that read a results store, and
    answers with its ``dataset``, ``max_train``, ``target`` and ``models``.

    Parameters
    ----------
    results : list of dict
        Batch results (`lensllm_nb.workflow.batch.BatchResult.results`): ``notebook``,
        ``status`` and ``output`` (the executed notebook) are read.

    Returns
    -------
    SelectionAnswer or None
        None when no job selects a model; a `ConfigError` of the data (too few
        sizes, a missing store) propagates so the caller can show it.
    """
    import nbformat

    for result in results:
        if Path(result.get("notebook") or "").stem != SELECT_NOTEBOOK or result.get("status") != "ok":
            continue
        params = nbformat.read(result["output"], as_version=4).metadata.get("papermill", {}).get("parameters", {})
        if not params.get("store") or params.get("max_train") is None:
            continue

        if not Path(params["store"]).is_file():
            raise ConfigError(f"`store` = {params['store']!r} of job {result.get('name')!r} does not exist")
        # The notebook's own display names: its `dataset` and `models` are given in them.
        table = load_curves(store=params["store"], names=params.get("names") or None)
        models = params.get("models")
        return answer_selection(table, max_train=int(params["max_train"]), target=params.get("target"),
                                dataset=choose_dataset(table, params.get("dataset")) if params.get("dataset") else None,
                                models=choose_models(table, models) if models else None,
                                progressive_budget=params.get("progressive_budget"))
    return None


def _progressive(rows, answer, target, budget) -> dict:
    """Progressive selection on the sizes below `target`, checked like the main pick."""
    selector = ProgressiveSelector(budget=float(budget)).fit(rows[rows["n_train"] < target], target=target)
    return {"chosen": str(selector.chosen_), "budget": float(budget),
            "cost_fraction": float(selector.cost_fraction_), **answer.check(selector.chosen_)}


def _baselines(rows, answer, max_train, target) -> dict:
    """What the free baselines pick (those the table has the columns for), checked like the pick."""
    picks = {}
    for name in BASELINES:
        try:
            selector = make_selector(name).fit(rows, max_train=max_train, target=target)
        except ConfigError:
            continue  # no zero-shot runs or no parameter counts: that baseline cannot answer
        picks[name] = {"chosen": str(selector.chosen_), **answer.check(selector.chosen_)}
    return picks


def _finite(value):
    value = float(value)
    return value if math.isfinite(value) else None


def _loss(value) -> str:
    return f"{float(value):.3f}"


def _interval(low, high) -> str:
    if low is None or high is None:
        return "n/a"
    return f"{low:.3f} – {high:.3f}"


def _check_html(facts) -> str:
    if facts["true_rank"] is None:
        return ("<p class=\"answer-check\">No full runs at the target to check against: the pick is a "
                "prediction only.</p>")
    return (f"<p class=\"answer-check\">Check against the full runs (ground truth, never seen by the "
            f"selection): the pick is <b>#{facts['true_rank']} of {facts['candidates']}</b> by true loss "
            f"(best: {escape_html(facts['best_true'])}); RelAcc <b>{facts['relacc']:.3f}</b>, "
            f"regret {facts['regret']:.3f} nats. Full runs inside their {facts['level']:.0%} intervals: "
            f"<b>{facts['inside']} of {facts['candidates']}</b>.{_baselines_html(facts['baselines'])}</p>")


def _baselines_html(baselines) -> str:
    if not baselines:
        return ""
    picks = [f"{BASELINES[name]} picks {escape_html(pick['chosen'])} (#{pick['true_rank']})"
             for name, pick in baselines.items()]
    return f" Without fine-tuning, {' and '.join(picks)}."


def _progressive_html(progressive, target) -> str:
    if not progressive:
        return ""
    check = ("" if progressive["true_rank"] is None else
             f"; true rank #{progressive['true_rank']}, RelAcc {progressive['relacc']:.3f}")
    return (f"<p>Progressive selection (budget {progressive['budget']:.0%} of fine-tuning all on "
            f"{target:,}) picks <b>{escape_html(progressive['chosen'])}</b> for "
            f"{progressive['cost_fraction']:.1%} of those FLOPs{check}.</p>")


# Figures are drawn at twice the dots per inch they are shown at: sharp on high-density screens.
_FIGURE_DPI = 110
_FIGURE_SCALE = 2
# Up to this viewport width the index shows the narrow layout of the figure.
_NARROW_SCREEN_PX = 760


def _figure_data(fig) -> tuple:
    """``(base64 PNG, width in CSS px)`` of `fig` drawn at `_FIGURE_SCALE` × its CSS size; `fig` is closed."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    width = round(fig.get_size_inches()[0] * _FIGURE_DPI)
    fig.savefig(buffer, format="png", dpi=_FIGURE_DPI * _FIGURE_SCALE)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii"), width


def _figure_html(wide, narrow) -> str:
    """One ``<picture>``: `narrow`'s layout on screens up to `_NARROW_SCREEN_PX`, `wide`'s above.

    Each is shown at most at its own size and shrinks with the page; the box it
    is in scrolls sideways below a minimum width rather than shrinking labels
    to nothing.
    """
    (wide_png, wide_px), (narrow_png, narrow_px) = _figure_data(wide), _figure_data(narrow)
    return (f'<div class="answer-figure"><picture>'
            f'<source media="(max-width: {_NARROW_SCREEN_PX}px)" srcset="data:image/png;base64,{narrow_png}" '
            f'width="{narrow_px}">'
            f'<img alt="candidates\' curves with the prediction at the target" width="{wide_px}" '
            f'src="data:image/png;base64,{wide_png}"></picture></div>')


_ANSWER_HTML = """<section class="answer">
<h2>Fine-tune <code>{chosen}</code></h2>
<p class="answer-reason">Why: {reason}</p>
<p class="answer-lead">Predicted loss on all {target} examples of <code>{dataset}</code>: <b>{predicted}</b>
({level} interval {interval}); probability that it is the best candidate: <b>{p_best}</b>.</p>
<p>Selection by <code>{method}</code> from fine-tunes on at most {max_train} examples of each of
{candidates} candidates: <b>{cost}</b> of the FLOPs of fine-tuning every candidate on {target} examples.</p>
{budget}
{check}
{progressive}
{figure}
<div class="table-scroll"><table class="answer-table">
<tr><th>candidate</th><th>predicted</th><th>interval</th><th>p_best</th><th>full run (ground truth)</th><th>true rank</th></tr>
{table}
</table></div>
</section>
"""
