"""The interactive model-comparison cell of notebook 03 (ipywidgets).

`ComparisonWidget` wires a dataset dropdown, a model multi-select, a law dropdown,
a budget slider (the largest visible training size) and a target-size dropdown to
one refit: every change fits the chosen law to the visible part of every selected
curve in one vectorized pass (`lensllm_nb.curve_fits.fit_curves`), then redraws the
curves, the ranking table and the cost fraction.

Results are written with ``Output.append_display_data()``, so ``widget.out.outputs``
holds them even without a kernel or browser (tests set ``.value`` and read it).
Without a live frontend (papermill, nbconvert, shared reports) Python callbacks
cannot run, so the ``static`` mode displays the same figure and table as plain
outputs instead of controls; ``auto`` picks ``static`` when the batch runner set
``LENSLLM_NB_STATIC=1`` or no IPython kernel is running.
"""

from __future__ import annotations

import io
import os

import numpy as np
import pandas as pd

from .errors import ConfigError, LensLLMError
from .safe_output import escape_markdown

__all__ = ["ComparisonWidget", "comparison_widget", "LAW_LABELS"]

LAW_LABELS = {"lensllm": "LensLLM", "rectified": "rectified", "vanilla": "power (vanilla)"}
_MODES = ("auto", "live", "static")
_DPI = 80
_LEVEL = 0.9  # prediction interval shown in the ranking table and the figure
_MAX_BANDS = 8  # interval bands are drawn up to this many models
_DEFAULT_RATIO = 64  # default budget: target / 64, as in the benchmark protocol's ratios


class ComparisonWidget:
    """Compare candidate models on one dataset, refitting on every change.

    Parameters
    ----------
    table : pandas.DataFrame
        Tidy curves table (one or more datasets); not modified.
    dataset : str, optional
        Initial dataset; default the first in sorted order.
    models : list of str, optional
        Initially selected models; default all models of the dataset.
    law : {"lensllm", "rectified", "vanilla"}
        Initial law.
    max_train : int, optional
        Initial budget: the largest visible size. Default: the largest measured
        size ≤ ``target / 64`` (a few percent of the full fine-tuning cost), but at
        least the third positive size.
    target : int, optional
        Initial size whose loss is predicted; default the largest measured size.
    mode : {"auto", "live", "static"}
        ``live`` shows the controls, ``static`` a figure and table only.

    Attributes
    ----------
    dataset, models, law, budget, target : ipywidgets widgets
        The controls; setting ``.value`` refits.
    out : ipywidgets.Output
        The figure (``image/png``), the ranking table (``text/html``) and the
        cost line (``text/markdown``) of the last refit.
    fit_ : FitResult
        The last fit.
    ranking_ : pandas.DataFrame
        One row per selected model, best predicted loss first.
    chosen_ : str or None
        The model ranked first.
    cost_fraction_ : float
        FLOPs of fine-tuning the selected models on the visible sizes, relative
        to fine-tuning them on ``target`` examples.
    png_ : bytes
        The last figure.
    error_ : str or None
        Why the last refit produced no ranking (shown in ``out``), else None.
    """

    def __init__(self, table, *, dataset=None, models=None, law="lensllm", max_train=None,
                 target=None, mode="auto"):
        import ipywidgets as w

        from .curves import validate_curves

        if mode not in _MODES:
            raise ConfigError(f"`mode` = {mode!r} is not one of {list(_MODES)}; use 'auto' for notebooks")
        if law not in LAW_LABELS:
            raise ConfigError(f"`law` = {law!r} is not one of {sorted(LAW_LABELS)}; pick one of those")
        self.table = validate_curves(table, source=table.attrs.get("source", "<table>"))
        self.mode = _resolve_mode(mode)
        datasets = sorted(self.table["dataset"].unique())
        if dataset is None:
            dataset = datasets[0]
        if dataset not in datasets:
            raise ConfigError(f"`dataset` = {dataset!r} is not in the table; choose from {datasets}")

        self.dataset = w.Dropdown(options=datasets, value=dataset, description="dataset")
        self.models = w.SelectMultiple(description="models", rows=8, layout=w.Layout(width="28em"))
        self.law = w.Dropdown(options=[(label, name) for name, label in LAW_LABELS.items()], value=law,
                              description="law")
        self.budget = w.SelectionSlider(options=[1], description="budget", continuous_update=False,
                                        layout=w.Layout(width="32em"),
                                        tooltip="largest visible training size")
        self.target = w.Dropdown(options=[1], description="target")
        self.out = w.Output()
        self.fit_ = None
        self.ranking_ = pd.DataFrame()
        self.chosen_ = None
        self.cost_fraction_ = float("nan")
        self.png_ = b""
        self.error_ = None

        self._quiet = True  # no refit while the options are being filled in
        self._set_dataset_options(dataset, models=models, max_train=max_train, target=target)
        self._quiet = False
        self.dataset.observe(self._on_dataset, names="value")
        for control in (self.models, self.law, self.budget, self.target):
            control.observe(self._on_change, names="value")
        self.refresh()

    # ------------------------------------------------------------ public

    @property
    def widget(self):
        """The controls and the output area as one ipywidgets box."""
        import ipywidgets as w

        row = w.HBox([w.VBox([self.dataset, self.law, self.target, self.budget]), self.models])
        return w.VBox([row, self.out])

    def refresh(self) -> None:
        """Refit with the current control values and redraw the output area.

        A setting the fit cannot use (no models selected, a budget at or above the
        target, too few visible points) is shown in the output area and kept in
        ``error_`` instead of raising, because a callback's exception would be lost.
        """
        self.error_ = None
        try:
            self._refit()
        except LensLLMError as exc:
            self._clear(exc)
        self._redraw()

    def _ipython_display_(self):
        """Show the controls (live) or the figure, table and cost line (static)."""
        from IPython.display import display

        if self.mode == "live":
            display(self.widget)
        else:
            for item in self._display_items():
                display(item)

    # ------------------------------------------------------------ wiring

    def _set_dataset_options(self, dataset, *, models=None, max_train=None, target=None):
        """Fill models, budget and target options for `dataset`."""
        rows = self.table[self.table["dataset"] == dataset]
        available = sorted(rows["model"].unique())
        if models is None:
            models = available
        unknown = sorted(set(models) - set(available))
        if unknown:
            raise ConfigError(f"`models` contains {unknown[:5]}, not in dataset {dataset!r}; "
                              f"choose from {available[:10]}")
        sizes = sorted(int(n) for n in rows["n_train"].unique() if n > 0)
        if len(sizes) < 4:
            raise ConfigError(f"dataset {dataset!r} has only {len(sizes)} positive sizes; the comparison "
                              "needs at least 3 visible sizes and a larger target")
        target = sizes[-1] if target is None else int(target)
        if target <= sizes[2]:
            raise ConfigError(f"`target` = {target} leaves fewer than 3 measured sizes below it; "
                              f"choose a target above {sizes[2]}")
        targets = sorted(set(sizes[3:]) | {target})
        budgets = [n for n in sizes if n < max(targets)]
        if max_train is None:
            below = [n for n in sizes if n <= target / _DEFAULT_RATIO]
            max_train = max(below[-1] if below else sizes[2], sizes[2])
        if int(max_train) not in budgets:
            raise ConfigError(f"`max_train` = {max_train!r} is not a measured size below the target; "
                              f"choose one of {budgets}")
        self.models.options = available
        self.models.value = tuple(models)
        self.target.options = targets
        self.target.value = target
        self.budget.options = budgets
        self.budget.value = int(max_train)

    def _on_dataset(self, change):
        self._quiet = True
        try:
            self._set_dataset_options(change["new"])
        except LensLLMError as exc:
            # A dataset the comparison cannot use: say so instead of showing the old one's results.
            self._clear(exc)
            self._redraw()
            return
        finally:
            self._quiet = False
        self.refresh()

    def _on_change(self, change):
        if not self._quiet:
            self.refresh()

    # ------------------------------------------------------------ computing

    def _clear(self, exc) -> None:
        """Drop the last results and keep why in ``error_``."""
        self.error_ = str(exc)
        self.fit_, self.ranking_, self.chosen_, self.png_ = None, pd.DataFrame(), None, b""
        self.cost_fraction_ = float("nan")

    def _refit(self) -> None:
        """Fit, rank, cost and draw for the current values (raises on bad settings)."""
        from .curve_fits import fit_curves
        from .metrics import cost_fraction

        models = list(self.models.value)
        if not models:
            raise ConfigError("`models` is empty; select at least one model")
        budget, target = int(self.budget.value), int(self.target.value)
        if budget >= target:
            raise ConfigError(f"`budget` = {budget} is not below `target` = {target}; "
                              "lower the budget or raise the target")
        rows = self.table[(self.table["dataset"] == self.dataset.value) & self.table["model"].isin(models)]
        self.fit_ = fit_curves(rows, self.law.value, max_train=budget)
        self.ranking_ = _ranking(rows, self.fit_, target)
        fitted = self.ranking_[self.ranking_["status"] == "ok"]
        self.chosen_ = fitted["model"].iloc[0] if len(fitted) else None
        self.cost_fraction_ = cost_fraction(rows, max_train=budget, target=target)
        self.png_ = _draw(rows, self.fit_, models, budget, target)

    def _display_items(self) -> list:
        """The IPython display objects of the last refit."""
        from IPython.display import HTML, Image, Markdown

        if self.error_:
            return [Markdown(f"**Cannot compare:** {escape_markdown(self.error_)}")]
        return [
            Image(data=self.png_, format="png"),
            HTML(self.ranking_.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="–",
                               classes="lensllm-ranking")),
            Markdown(self._summary_line()),
        ]

    def _summary_line(self) -> str:
        law = LAW_LABELS[self.law.value]
        n = len(self.models.value)
        # Model names come from the data and this line is rendered as Markdown in mailed reports.
        chosen = f"**{escape_markdown(self.chosen_)}**" if self.chosen_ else "no model (every fit failed)"
        return (f"{law} law fitted on sizes ≤ {self.budget.value:,} predicts {chosen} best at "
                f"{self.target.value:,} examples. Cost: {self.cost_fraction_:.2%} of the FLOPs of "
                f"fine-tuning all {n} selected models on {self.target.value:,} examples.")

    def _redraw(self) -> None:
        self.out.outputs = ()
        for item in self._display_items():
            self.out.append_display_data(item)


def comparison_widget(table, **settings) -> ComparisonWidget:
    """Build a `ComparisonWidget` (see its parameters); display it as a cell's last value."""
    return ComparisonWidget(table, **settings)


def _resolve_mode(mode) -> str:
    """Turn ``auto`` into ``live`` or ``static``."""
    if mode != "auto":
        return mode
    if os.environ.get("LENSLLM_NB_STATIC") == "1":
        return "static"
    try:
        from IPython import get_ipython
    except ImportError:
        return "static"
    shell = get_ipython()
    return "live" if shell is not None and getattr(shell, "kernel", None) is not None else "static"


def _ranking(rows, fit, target) -> pd.DataFrame:
    """One row per model: predicted loss at `target` (with interval), truth when measured."""
    truth = rows[rows["n_train"] == target].groupby("model")["test_loss"].mean()
    summary = fit.summary.set_index("model")
    records = []
    for model in sorted(rows["model"].unique()):
        law = fit.laws.get(model)
        record = {"model": model, "predicted": np.nan, "low": np.nan, "high": np.nan,
                  "true": truth.get(model, np.nan), "d_star": np.nan, "rmse_log": np.nan,
                  "status": summary.loc[model, "status"] if model in summary.index else "failed"}
        if law is not None:
            low, high = law.predict_interval([target], level=_LEVEL)
            record.update(predicted=float(law.predict([target])[0]), low=float(low[0]), high=float(high[0]),
                          d_star=np.nan if law.d_star_ is None else float(law.d_star_),
                          rmse_log=float(law.rmse_log_))
        records.append(record)
    table = pd.DataFrame(records).sort_values(["predicted", "model"], na_position="last", kind="stable")
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    if table["true"].notna().any():
        table["true_rank"] = table["true"].rank(method="min").astype("Int64")
    else:
        table = table.drop(columns="true")
    return table.reset_index(drop=True)


def _draw(rows, fit, models, budget, target) -> bytes:
    """Draw the curves with the fitted laws; return PNG bytes and close the figure."""
    import matplotlib.pyplot as plt

    from .plots import plot_curves

    # Thirty interval bands hide the curves (and take a third of the drawing time).
    interval = _LEVEL if len(models) <= _MAX_BANDS else None
    ax = plot_curves(rows, fit, models=models, max_train=budget, target=target, phase=True,
                     interval=interval)
    buffer = io.BytesIO()
    try:
        ax.figure.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight")
    finally:
        # A figure left open would be shown again by the inline backend.
        plt.close(ax.figure)
    return buffer.getvalue()
