"""The interactive model-comparison cell of notebook 03 (ipywidgets).

``ComparisonWidget`` wires a dataset, the models, a budget and a target size to the
prediction engine: every change shows the default method's predicted loss at the
target with its interval and ``p_best``, the ranking and the cost fraction.

Details and derivations: docs/METHODS.md, section ``lensllm_nb.workflow.widgets``.
"""

from __future__ import annotations

import io
import os
import time

import pandas as pd

from ..analysis.curve_fits import fit_curves
from ..analysis.predict import DEFAULT_METHOD, predict_candidates
from ..errors import ConfigError, LensLLMError
from ..utils.safe_output import escape_markdown
from .notebook_curves import PreparedCurves, load_curves, prepare_curves
from .plots import model_palette, plot_predictions, prediction_figure_axes
from .tables import ranking_table

__all__ = ["ComparisonWidget", "comparison_widget", "OVERLAYS"]

# Law fits that can be drawn over the curves, with the names the key gives them.
OVERLAYS = {"none": "no law fit", "rectified": "rectified law fit", "lensllm": "LensLLM law fit",
            "vanilla": "power law fit (vanilla)"}
_MODES = ("auto", "live", "static")
_DPI = 72
_FIGSIZE = (10.5, 4.6)
_LEVEL = 0.9  # prediction interval shown in the ranking table and the figure
_HIGHLIGHT = 8  # best-predicted candidates drawn in colour and named in the key
_CACHE = 64  # settings whose results are kept


class ComparisonWidget:
    """Compare candidate models on one dataset with the prediction engine, on every change.

    Parameters
    ----------
    table : pandas.DataFrame or PreparedCurves
        Tidy curves table (one or more datasets), or the result of
        :func:`lensllm_nb.workflow.notebook_curves.prepare_curves` (its whole source is offered);
        not modified.
    dataset : str, optional
        Initial dataset; default the first in sorted order.
    models : list of str, optional
        Initially selected models; default all models of the dataset.
    law : {"none", "rectified", "lensllm", "vanilla"}
        Initial law-fit overlay (``"none"``: no overlay).
    max_train : int, optional
        Initial budget: the largest visible size. Default as in
        :func:`lensllm_nb.workflow.notebook_curves.prepare_curves` (target / 64).
    target : int, optional
        Initial size whose loss is predicted; default the largest measured size.
    mode : {"auto", "live", "static"}
        ``live`` shows the controls, ``static`` a figure and table only.

    Attributes
    ----------
    dataset, models, law, budget, target : ipywidgets widgets
        The controls; setting ``.value`` updates the outputs.
    out : ipywidgets.Output
        The figure (``image/png``), the ranking table (``text/html``) and the
        summary line (``text/markdown``) of the last change.
    predictions_ : CandidatePredictions or None
        The engine's result for the current settings.
    ranking_ : pandas.DataFrame
        :func:`lensllm_nb.workflow.tables.ranking_table`: best first, with ``true`` and
        ``true_rank`` when the target was measured.
    chosen_ : str or None
        The recommended model.
    cost_fraction_ : float
        FLOPs of the visible runs relative to fine-tuning every selected model
        on ``target`` examples.
    fit_ : FitResult or None
        The law fits of the overlay, when one is drawn.
    png_ : bytes
        The last figure.
    error_ : str or None
        Why the last change produced no ranking (shown in ``out``), else None.
    timings_ : dict
        Seconds spent by the last change in ``predict`` (engine and overlay fit)
        and ``draw`` (figure to PNG).
    """

    def __init__(self, table, *, dataset=None, models=None, law="none", max_train=None, target=None,
                 mode="auto"):
        import ipywidgets as w

        if mode not in _MODES:
            raise ConfigError(f"`mode` = {mode!r} is not one of {list(_MODES)}; use 'auto' for notebooks")
        if law is None:
            law = "none"
        if law not in OVERLAYS:
            raise ConfigError(f"`law` = {law!r} is not one of {list(OVERLAYS)}; pick one of those "
                              "('none' draws no law fit)")
        self.table = table.loaded if isinstance(table, PreparedCurves) else load_curves(table)
        self.mode = _resolve_mode(mode)
        datasets = sorted(self.table["dataset"].unique())
        self.dataset = w.Dropdown(options=datasets, description="dataset")
        self.models = w.SelectMultiple(description="models", rows=8, layout=w.Layout(width="28em"))
        self.law = w.Dropdown(options=[(label, name) for name, label in OVERLAYS.items()], value=law,
                              description="law overlay")
        self.budget = w.SelectionSlider(options=[1], description="budget", continuous_update=False,
                                        layout=w.Layout(width="32em"),
                                        tooltip="largest visible training size")
        self.target = w.Dropdown(options=[1], description="target")
        self.out = w.Output()
        self.predictions_, self.fit_, self.chosen_, self.error_ = None, None, None, None
        self.ranking_ = pd.DataFrame()
        self.cost_fraction_ = float("nan")
        self.png_ = b""
        self.timings_ = {}
        self._cache = {}
        self._figure, self._axes = None, None

        self._quiet = True  # no update while the options are being filled in
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

        row = w.HBox([w.VBox([self.dataset, self.target, self.budget, self.law]), self.models])
        return w.VBox([row, self.out])

    def refresh(self) -> None:
        """Predict with the current control values and redraw the output area.

        A setting the engine cannot use (no models selected, a budget at or above
        the target, too few visible points) is shown in the output area and kept
        in ``error_`` instead of raising, because a callback's exception would be lost.
        """
        self.error_ = None
        try:
            self._update()
        except LensLLMError as exc:
            self._clear(exc)
        self._redraw()

    def _ipython_display_(self):
        """Show the controls (live) or the figure, table and summary line (static)."""
        from IPython.display import display

        if self.mode == "live":
            display(self.widget)
        else:
            for item in self._display_items():
                display(item)

    # ------------------------------------------------------------ wiring

    def _set_dataset_options(self, dataset, *, models=None, max_train=None, target=None):
        """Fill dataset, models, budget and target from the one curves-preparation path."""
        curves = prepare_curves(self.table, dataset=dataset, models=models, max_train=max_train, target=target)
        if int(curves.max_train) not in curves.budgets:
            raise ConfigError(f"`max_train` = {max_train!r} is not a measured size below the target; "
                              f"choose one of {curves.budgets}")
        self.dataset.value = curves.dataset
        self.models.options = sorted(self.table[self.table["dataset"] == curves.dataset]["model"].unique())
        self.models.value = tuple(curves.models)
        self.target.options = curves.targets
        self.target.value = curves.target
        self.budget.options = [n for n in curves.sizes if n < max(curves.targets)][2:]
        self.budget.value = curves.max_train

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
        self.predictions_, self.fit_, self.chosen_, self.png_ = None, None, None, b""
        self.ranking_ = pd.DataFrame()
        self.cost_fraction_ = float("nan")

    def _update(self) -> None:
        """Predict, rank and draw for the current values (raises on bad settings)."""
        models = tuple(self.models.value)
        if not models:
            raise ConfigError("`models` is empty; select at least one model")
        budget, target = int(self.budget.value), int(self.target.value)
        if budget >= target:
            raise ConfigError(f"`budget` = {budget:,} is not below `target` = {target:,}; "
                              "lower the budget or raise the target")
        started = time.perf_counter()
        key = (self.dataset.value, models, budget, target, self.law.value)
        if key not in self._cache:
            self._cache = dict(list(self._cache.items())[-(_CACHE - 1):])
            self._cache[key] = self._compute(models, budget, target)
        self.predictions_, self.fit_, self.ranking_ = self._cache[key]
        self.chosen_ = self.predictions_.chosen
        self.cost_fraction_ = self.predictions_.cost_fraction
        drawn = time.perf_counter()
        self.png_ = self._draw()
        self.timings_ = {"predict": drawn - started, "draw": time.perf_counter() - drawn}

    def _compute(self, models, budget, target):
        """The engine's predictions, the overlay's law fits and the ranking table."""
        rows = self.table[(self.table["dataset"] == self.dataset.value) & self.table["model"].isin(models)]
        predictions = predict_candidates(rows, max_train=budget, target=target, method=DEFAULT_METHOD,
                                         level=_LEVEL)
        fit = None if self.law.value == "none" else fit_curves(rows, self.law.value, max_train=budget)
        truth = rows[rows["n_train"] == target].groupby("model")["test_loss"].mean()
        return predictions, fit, ranking_table(predictions, truth)

    def _draw(self) -> bytes:
        """Draw on the reused figure and return PNG bytes."""
        if self._figure is None:
            from matplotlib.figure import Figure

            # Not a pyplot figure: the inline backend never shows it twice, and it is reused.
            self._figure = Figure(figsize=_FIGSIZE, dpi=_DPI)
            self._axes = prediction_figure_axes(self._figure)
        rows = self.table[(self.table["dataset"] == self.dataset.value)
                          & self.table["model"].isin(self.models.value)]
        overlay = None if self.fit_ is None else OVERLAYS[self.law.value]
        # Colours of every candidate of the dataset: deselecting one leaves the others' colours.
        plot_predictions(rows, self.predictions_, fits=self.fit_, highlight=_HIGHLIGHT,
                         axes=self._axes, overlay_name=overlay, palette=model_palette(self.models.options))
        buffer = io.BytesIO()
        self._figure.savefig(buffer, format="png", dpi=_DPI)
        return buffer.getvalue()

    def _display_items(self) -> list:
        """The IPython display objects of the last change."""
        from IPython.display import HTML, Image, Markdown

        if self.error_:
            return [Markdown(f"**Cannot compare:** {escape_markdown(self.error_)}")]
        return [
            Image(data=self.png_, format="png"),
            HTML(self.ranking_.to_html(index=False, escape=True, float_format=lambda v: f"{v:.4g}",
                                       na_rep="–", classes="lensllm-ranking")),
            Markdown(self._summary_line()),
        ]

    def _summary_line(self) -> str:
        res = self.predictions_
        best = float(res.frame.set_index("model").loc[res.chosen, "p_best"])
        n = len(self.models.value)
        return (f"Method {escape_markdown(res.method)} on {escape_markdown(res.dataset)}, from sizes ≤ "
                f"{res.max_train:,}, picks **{escape_markdown(res.chosen)}** for {res.target:,} "
                f"examples (P(best) {best:.0%}; {res.level:.0%} intervals in the table). Why: "
                f"{escape_markdown(res.chosen_reason)} Cost: "
                f"{res.cost_fraction:.2%} of the FLOPs of fine-tuning all {n} selected models on "
                f"{res.target:,} examples.")

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
