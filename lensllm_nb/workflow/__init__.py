"""Notebook workflow: curves for a notebook, tables (and how they show), benchmark runs,
plots, widgets, batch runs, reports, the demo.

Import from the modules (``from lensllm_nb.workflow.tables import ranking_table``);
matplotlib, ipywidgets, papermill and dask load only with the modules that use them.
"""

__all__ = [
    "notebook_curves", "tables", "frames", "benchmark_runs", "plots", "widgets", "grid_runs", "recommendation",
    "batch", "report", "demo",
]
