"""One colour per candidate across every figure of a run.

The colour of a model depends only on the set of candidates, never on a figure's
order (best first, alphabetical) or on which of them a figure draws: the sorted
names take the colours of one palette in turn. The prediction figure, the law-fit
overlay, the comparison widget and the index's answer all call
:func:`model_palette` on the same candidates, so a model keeps its colour from one
figure of a report to the next.
"""

from __future__ import annotations

import seaborn as sns

__all__ = ["model_palette"]


def model_palette(models) -> dict:
    """Map each candidate to its colour: sorted names → ``tab10`` (``husl`` above 10 models).

    Parameters
    ----------
    models : iterable of str
        Every candidate of the run (duplicates are ignored); a figure drawing only
        some of them picks theirs from this mapping.

    Returns
    -------
    dict
        ``model -> (r, g, b)``.
    """
    names = sorted({str(m) for m in models})
    return dict(zip(names, sns.color_palette("tab10" if len(names) <= 10 else "husl", len(names))))
