"""Seaborn figures, one module per plot family (as seaborn's own modules).

``curves`` (measured curves and fitted laws), ``predictions`` (the engine's
predictions, ranking, predicted against true), ``benchmark`` (protocol heatmap and
Pareto plot), ``calibration`` (coverage and reliability), ``recommendation`` (the
index page's answer figure); ``palette`` the one colour per candidate they all use;
``_base`` holds the shared helpers and ``save_figure``.
Axes-level functions return the Axes they drew on; figure-level ones their grid or
figure whatever the data (the ``*_grid`` functions a FacetGrid, also for one dataset).
"""

from ._base import save_figure
from .benchmark import plot_benchmark_heatmap, plot_benchmark_heatmap_grid, plot_pareto, plot_pareto_grid
from .calibration import plot_coverage, plot_coverage_grid, plot_reliability
from .palette import model_palette
from .curves import plot_curves, plot_curves_grid
from .predictions import plot_predicted_vs_true, plot_predictions, plot_ranking, prediction_figure_axes
from .recommendation import plot_recommendation

__all__ = [
    "plot_curves", "plot_curves_grid", "plot_predicted_vs_true", "plot_predictions", "prediction_figure_axes",
    "plot_ranking", "plot_benchmark_heatmap", "plot_benchmark_heatmap_grid", "plot_pareto", "plot_pareto_grid",
    "plot_coverage", "plot_coverage_grid", "plot_reliability",
    "plot_recommendation", "save_figure", "model_palette",
]
