"""The recommendation's figure: measured curves, each prediction with its interval, full runs.

Drawn for the index page's answer (:class:`~lensllm_nb.workflow.recommendation.SelectionAnswer`).
"""

from __future__ import annotations

from ...utils.safe_output import escape_mathtext
from .palette import model_palette

__all__ = ["plot_recommendation"]

# Ratio between the x positions of neighbouring candidates' marks at the target (six
# candidates span 3× around it, more share that span) and the full run's circle size,
# wide and narrow: the narrow axes give a decade fewer pixels.
_DODGE = {False: 1.25, True: 1.35}
_CIRCLE = {False: 9, True: 7}


def plot_recommendation(answer, *, narrow=False):
    """Draw the candidates' measured curves with each prediction (and full run) at the target.

    Parameters
    ----------
    answer : lensllm_nb.workflow.recommendation.SelectionAnswer
    narrow : bool
        Draw for a phone-width screen: a 4.2-inch figure, the title on three
        lines and the legend under the axes, so that labels stay legible when it
        is shown about 370 px wide. Default: 8.5 inches, legend to the right.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    pred = answer.prediction
    fig, ax = plt.subplots(figsize=(4.2, 5.4) if narrow else (8.5, 4.8))
    colors = model_palette(pred.frame["model"])  # the colours of the notebooks' figures
    step = _DODGE[narrow] ** (1 if len(pred.frame) <= 6 else 6 / len(pred.frame))
    for i, row in enumerate(pred.frame.to_dict("records")):
        color = colors[row["model"]]
        curve = answer.curves[(answer.curves["model"] == row["model"]) & (answer.curves["n_train"] > 0)
                              & (answer.curves["n_train"] <= pred.max_train)]
        ax.plot(curve["n_train"], curve["test_loss"], "o-", color=color, ms=4,
                label=escape_mathtext(row["model"]))
        # Side by side around the target (the dotted line), so that the marks do not hide each other.
        at = pred.target * step ** (i - (len(pred.frame) - 1) / 2)
        ax.errorbar([at], [row["predicted"]], fmt="D", color=color, ms=_CIRCLE[narrow] - 3, capsize=3,
                    yerr=[[row["predicted"] - row["low"]], [row["high"] - row["predicted"]]])
        if row["model"] in answer.truth.index:
            ax.plot([at], [answer.truth[row["model"]]], "o", mfc="none", mec=color, ms=_CIRCLE[narrow], mew=1.5)
    ax.axvline(pred.target, color="#90a4ae", ls=":", lw=1, zorder=0)
    ax.axvspan(ax.get_xlim()[0], pred.max_train, color="#eef3f8", zorder=0)
    ax.set_xscale("log")
    ax.set_xlabel("training examples (log scale)")
    ax.set_ylabel("test loss")
    _title_and_legend(ax, pred, narrow)
    fig.tight_layout()
    return fig


def _title_and_legend(ax, pred, narrow):
    """The key to the marks as a title, and the legend: right of the axes, or under them when narrow."""
    parts = [f"seen: sizes ≤ {pred.max_train:,} (shaded)",
             f"◆ prediction at {pred.target:,} (dotted line) with {pred.level:.0%} interval", "○ full run (ground truth)"]
    if narrow:
        ax.set_title("\n".join(parts), fontsize=9.5, loc="left")
        ax.legend(fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    else:
        ax.set_title(" · ".join(parts), fontsize=9)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
