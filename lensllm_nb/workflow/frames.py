"""How notebooks show tables: a missing value reads "—", never a silent ``NaN``; text is shown in full.

:func:`show_frames` registers :func:`frame_html` and :func:`frame_text` as the
IPython display of every ``pandas.DataFrame`` in the running kernel (the notebooks
call it once in their import cell). Only the display changes: the DataFrames stay
numeric, with ``NaN`` where a value is missing, and tables that know why a value
is missing say so in a column of their own (``d_star_note``, ``reason``, ``missing``).
Cells are HTML-escaped by pandas.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["MISSING", "frame_html", "frame_text", "show_frames"]

MISSING = "—"


def _shown(frame) -> pd.DataFrame:
    """`frame` with every missing value as NaN, the one that pandas writes as `na_rep`.

    pandas writes a None or NA of an object, ``Int64``, ``boolean`` or ``string`` column
    literally ("None", "<NA>"): such columns are shown as objects with NaN there. Float,
    datetime and timedelta columns keep their dtype (and their number format).
    """
    shown = None
    for position, dtype in enumerate(frame.dtypes):
        column = frame.iloc[:, position]
        if (isinstance(dtype, np.dtype) and dtype.kind in "fmM") or not column.isna().any():
            continue
        if pd.api.types.is_float_dtype(dtype):  # Float64: NA -> NaN, same numbers
            column = column.astype("float64")
        else:
            column = column.astype(object).where(column.notna(), np.nan)
        shown = frame.copy() if shown is None else shown
        shown.isetitem(position, column)
    return frame if shown is None else shown


def _rows(frame, *, max_rows, min_rows):
    """The rows pandas shows: all up to ``max_rows``, else ``min_rows`` (its own notebook rule)."""
    if max_rows is None or len(frame) <= max_rows:
        return max_rows
    return min_rows or max_rows


def frame_html(frame, *, na_rep=MISSING) -> str:
    """The notebook HTML of `frame` (as pandas draws it) with missing values as `na_rep` and text untruncated.

    Parameters
    ----------
    frame : pandas.DataFrame
    na_rep : str
        What a missing value (NaN, None, NaT, NA) reads.

    Returns
    -------
    str
        ``<div><style scoped>…</style><table class="dataframe">…</table></div>``, every cell escaped.
    """
    option = pd.get_option
    with pd.option_context("display.max_colwidth", None):  # a reason reads in full; the table wraps it
        return _shown(frame).to_html(
            na_rep=na_rep, float_format=option("display.float_format"), escape=True, notebook=True,
            max_rows=_rows(frame, max_rows=option("display.max_rows"), min_rows=option("display.min_rows")),
            max_cols=option("display.max_columns"), show_dimensions=option("display.show_dimensions"),
            bold_rows=True,
        )


def frame_text(frame, *, na_rep=MISSING) -> str:
    """The plain-text repr of `frame` with missing values as `na_rep` (pandas' display options otherwise)."""
    option = pd.get_option
    return _shown(frame).to_string(
        na_rep=na_rep, float_format=option("display.float_format"),
        max_rows=_rows(frame, max_rows=option("display.max_rows"), min_rows=option("display.min_rows")),
        max_cols=option("display.max_columns"), show_dimensions=option("display.show_dimensions"),
        max_colwidth=option("display.max_colwidth"), line_width=option("display.width"),
    )


def show_frames(shell=None) -> None:
    """Display every DataFrame of this IPython kernel with `frame_html` / `frame_text`.

    Parameters
    ----------
    shell : IPython.core.interactiveshell.InteractiveShell, optional
        Default: the running one.

    Outside IPython there is nothing to register and nothing happens. Returns
    None, so that a notebook cell ending with the call shows nothing.
    """
    if shell is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return
        shell = get_ipython()
    if shell is None:
        return
    formatters = shell.display_formatter.formatters
    formatters["text/html"].for_type(pd.DataFrame, frame_html)
    formatters["text/plain"].for_type(pd.DataFrame, lambda frame, printer, cycle: printer.text(frame_text(frame)))
