"""Notebook workflow: curves for a notebook, tables, plots, widgets, batch runs, reports, the demo.

Import from the modules (``from lensllm_nb.workflow.tables import ranking_table``);
matplotlib, ipywidgets, papermill and dask load only with the modules that use them.
"""

__all__ = [
    "notebook_curves", "tables", "plots", "widgets", "grid_runs", "recommendation",
    "batch", "report", "demo",
]
