"""Pick between the observed leader and the predicted leader by backtesting their gap.

A ranking extrapolated to the target can name a candidate B that is not the one with the
lowest loss at the largest visible size (the observed leader A). Which of the two to
fine-tune depends on the log-loss gap g = log L_A − log L_B at the target. Inside the visible
sizes both forecasts of g can be checked: from each backtest origin s_o, *persistence* says
the gap stays what it is at s_o, the *extrapolation* (the method refitted on sizes ≤ s_o)
says what it forecasts at the largest visible size s_k. The pick stays A unless the
extrapolation's error is the smaller, the predicted gap clears it grown to the target's
horizon, and the same backtest of A's gap to every other candidate does not favour
persistence (a check that the A − B result is no fluke on these curves). Nothing is
fitted; the studies that chose the rule are in ``docs/SELECTION_STUDY.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..utils.validation import check_choice
from .visible import cut_visible
from .extrapolate import line_fit
from .noise_floor import visible_noise

__all__ = ["PickDecision", "decide_pick", "gap_persistence", "backtest_origins", "ORIGINS", "NO_ORIGIN", "PAIR_POOL"]

# Which visible sizes may serve as backtest origins; what to pick when none can; how the
# leader-against-every-candidate backtest is scored (study PP, docs/SELECTION_STUDY.md).
ORIGINS = ("half", "all")
NO_ORIGIN = ("leader", "predicted")
PAIR_POOL = (None, "mean", "share", "veto")
# Points every candidate needs up to an origin for the method to be refitted there.
_MIN_POINTS = 3


@dataclass(frozen=True)
class PickDecision:
    """The pick and why.

    Attributes
    ----------
    chosen : str
    leader : str
        Lowest loss at the largest visible size (A).
    predicted : str
        Lowest predicted loss at the target (B, the top of the shown ranking).
    reason : str
        One plain sentence for the user.
    persistence_error, extrapolation_error : float
        Mean absolute error of the two forecasts of the A − B log gap over the
        backtest origins (NaN when there was no origin or A = B).
    origins : int
        Number of backtest origins used.
    pairs, pairs_persistence_closer : int
        Backtests of the leader's gap to every other candidate (one per origin and
        candidate) and how many of them persistence forecast more closely than the
        extrapolation (0 when there was no origin or A = B).
    """

    chosen: str
    leader: str
    predicted: str
    reason: str
    persistence_error: float = float("nan")
    extrapolation_error: float = float("nan")
    origins: int = 0
    pairs: int = 0
    pairs_persistence_closer: int = 0


def decide_pick(visible, log_pred, refit, *, origins="half", no_origin="leader", margin_test=True,
                short_lines=False, departure_level=None, noise_margin=False, pair_pool=None) -> PickDecision:
    """Choose between the observed leader and the top of the predicted ranking.

    Parameters
    ----------
    visible : lensllm_nb.analysis.selection.VisibleCurves
        The visible curves.
    log_pred : array_like
        The method's predicted log loss at ``visible.target``, one per candidate.
    refit : callable
        ``refit(curves) -> ndarray``: the same method's predicted log loss of every
        candidate of ``curves`` (a VisibleCurves) at ``curves.target``.
    origins : {"half", "all"}
        Backtest origins: visible sizes s_o ≤ s_k / 2 ("half", at least one doubling
        of horizon) or every s_o < s_k; each needs 3 points of every candidate.
    no_origin : {"leader", "predicted"}
        The pick when no origin exists: the observed leader, or the predicted one.
    departure_level : float, optional
        With ``margin_test``: None compares the predicted gap with the mean absolute
        backtest error grown to the target's horizon; a level p in (0, 1) compares it
        with ``t_n(p)`` times the RMS of the grown errors (a one-sample t-test over
        the n origins, ``docs/SELECTION_STUDY.md``, study T).
    noise_margin : bool
        With ``margin_test``: the gap must also clear the two candidates' noise
        floors, √(needed² + σ_A² + σ_B²) (study NP1).
    pair_pool : {None, "mean", "share", "veto"}
        A departure also needs the extrapolation to beat persistence on the gaps
        between A and *every* candidate over the same origins: by mean absolute
        error ("mean", study PP1), in more than half of the pairs ("share", PP2) or
        in at least half ("veto", PP3: blocked only where persistence wins most pairs).

    Returns
    -------
    PickDecision
    """
    for name, value, choices in (("origins", origins, ORIGINS), ("no_origin", no_origin, NO_ORIGIN),
                                 ("pair_pool", pair_pool, PAIR_POOL)):
        check_choice(name, value, choices)
    log_pred = np.asarray(log_pred, dtype=float)
    models = list(visible.models)
    a = int(np.argmin([l[-1] for l in visible.losses]))
    b = int(np.argmin(log_pred))
    s_k = float(visible.sizes[a][-1])
    if a == b:
        return PickDecision(models[a], models[a], models[b],
                            f"{models[a]}: observed leader at {s_k:,.0f} and predicted lowest at "
                            f"{visible.target:,}.")
    errors = _backtest_gap(visible, a, b, refit, origins, _MIN_POINTS)
    if errors is None and short_lines:
        # Too few points to refit the method: the straight line through each
        # candidate's points (two suffice) is the simplest extrapolation to test.
        errors = _backtest_gap(visible, a, b, _line_refit, origins, 2)
    gap = float(log_pred[a] - log_pred[b])
    margin = float(-np.expm1(-gap))  # B's predicted loss below A's, as a share of A's
    if errors is None:
        return _without_origin(models, a, b, s_k, visible.target, margin, no_origin)
    persist, signed, horizons, pooled = errors
    extrap, count = float(np.mean(np.abs(signed))), len(signed)
    needed = _needed_gap(signed, horizons, np.log2(visible.target / s_k), departure_level)
    if noise_margin:
        noise = visible_noise(visible)
        needed = float(np.sqrt(needed ** 2 + noise[a] ** 2 + noise[b] ** 2))
    backed = extrap < persist and (not margin_test or gap > needed)
    vetoed = backed and not _pool_backs(pooled, pair_pool)
    names = (models[a], models[b], f"{s_k:,.0f}", f"{visible.target:,}", f"{margin:.1%}")
    pool = (int(np.sum(pooled[1] < pooled[0])), pooled.shape[1])
    reason = _reason(names, (backed and not vetoed, vetoed), extrap < persist, (extrap, persist, count, gap, needed),
                     None if pair_pool is None else pool)
    return PickDecision(models[b] if backed and not vetoed else models[a], models[a], models[b], reason, persist,
                        extrap, count, pool[1], pool[0])


def _needed_gap(signed, horizons, horizon, level):
    """The predicted gap a departure must exceed: the backtest error grown to the target's ``horizon``."""
    if level is None:
        return float(np.mean(np.abs(signed)) * horizon / np.mean(horizons))
    from scipy.stats import t as student_t

    grown = signed * horizon / horizons
    return float(student_t.ppf(level, df=len(grown)) * np.sqrt(np.mean(grown ** 2)))


def _reason(names, outcome, extrapolation_better, numbers, pool=None):
    """The pick's reason in one sentence (names: A, B, s_k, target, margin; outcome: (depart, vetoed);
    numbers: errors and gaps; pool: (pairs persistence forecast more closely, pairs) or None)."""
    a, b, s_k, target, margin = names
    extrap, persist, count, gap, needed = numbers
    depart, vetoed = outcome
    backtest = (f"inside the visible sizes ({count} backtest origin(s)) the extrapolation forecast their gap at "
                f"{s_k} with error {extrap:.2g} log loss, persistence with {persist:.2g}")
    pairs = "" if pool is None else (f"on most of the leader's gaps to every candidate ({pool[0]} of {pool[1]} "
                                     f"backtests)")
    if vetoed:
        return (f"{a}: observed leader at {s_k}; {b} is predicted {margin} lower at {target}, and {backtest}, but "
                f"persistence was closer {pairs}: on these curves the extrapolation is not trusted.")
    if depart:
        pairs = pairs and f"; persistence was not closer {pairs}"
        return (f"{b}: predicted lowest at {target}, {margin} below the observed leader {a}; {backtest}, and the "
                f"predicted gap ({gap:.2g}) exceeds that error grown to the target's horizon ({needed:.2g}){pairs}.")
    if extrapolation_better:
        return (f"{a}: observed leader at {s_k}; {b} is predicted {margin} lower at {target}, but that gap "
                f"({gap:.2g} log loss) is within the extrapolation's backtested error grown to the target's "
                f"horizon ({needed:.2g}); {backtest}.")
    return (f"{a}: observed leader at {s_k}; {b} is predicted {margin} lower at {target}, but {backtest}: "
            f"persistence was closer.")


def _without_origin(models, a, b, s_k, target, margin, no_origin) -> PickDecision:
    why = "too few visible sizes to backtest the extrapolation"
    if no_origin == "leader":
        return PickDecision(models[a], models[a], models[b],
                            f"{models[a]}: observed leader at {s_k:,.0f}; {models[b]} is predicted {margin:.1%} "
                            f"lower at {target:,}, but there are {why}.")
    return PickDecision(models[b], models[a], models[b],
                        f"{models[b]}: predicted lowest at {target:,}, {margin:.1%} below the observed leader "
                        f"{models[a]} ({why}).")


def _line_refit(curves):
    """Log-log least-squares line of every candidate, evaluated at ``curves.target``."""
    x_t = np.log(curves.target)
    fits = [line_fit(np.log(s), np.log(l)) for s, l in zip(curves.sizes, curves.losses)]
    return np.array([slope * x_t + intercept for slope, intercept in fits])


def _pool_backs(pooled, pair_pool):
    """Whether the leader-against-every-candidate backtest backs a departure (``pooled``: |errors| of
    the extrapolation and of persistence, one row each, one column per pair)."""
    if pair_pool is None:
        return True
    extrap, persist = pooled
    if pair_pool == "mean":
        return bool(np.mean(extrap) < np.mean(persist))
    if pair_pool == "share":
        return bool(np.mean(extrap < persist) > 0.5)
    return bool(np.mean(persist < extrap) <= 0.5)


def _backtest_gap(visible, a, b, refit, origins, min_points):
    """Mean |error| of persistence, the refitted method's signed errors on the A − B gap and the horizons
    (doublings s_o → s_k) per origin, and both forecasts' |errors| on the A − j gap of every candidate j
    (every origin's pairs, stacked); None without origin."""
    sizes_a, sizes_b = visible.sizes[a], visible.sizes[b]
    s_k = sizes_a[-1]
    if s_k not in set(sizes_b):
        return None
    observed = _gap_at(visible, a, b, s_k)
    persist, extrap, horizons, pooled = [], [], [], []
    for s_o in backtest_origins(visible, sizes_a, half=origins == "half", min_points=min_points):
        if s_o not in set(sizes_b):
            continue
        forecast = np.asarray(refit(cut_visible(visible, s_o, target=s_k)), dtype=float)
        horizons.append(np.log2(s_k / s_o))
        persist.append(abs(_gap_at(visible, a, b, s_o) - observed))
        extrap.append(forecast[a] - forecast[b] - observed)
        pooled += _pair_errors(visible, a, forecast, s_o, s_k)
    if not persist:
        return None
    return float(np.mean(persist)), np.array(extrap), np.array(horizons), np.array(pooled).T


def _pair_errors(visible, a, forecast, s_o, s_k):
    """(|extrapolation error|, |persistence error|) on the A − j log gap at s_k for every j ≠ A measured
    at s_o and s_k."""
    rows = []
    for j, sizes in enumerate(visible.sizes):
        if j != a and s_o in set(sizes) and s_k in set(sizes):
            observed = _gap_at(visible, a, j, s_k)
            rows.append((abs(forecast[a] - forecast[j] - observed), abs(_gap_at(visible, a, j, s_o) - observed)))
    return rows


def gap_persistence(curves) -> tuple:
    """How often "the gap stays" beat straight lines on the leader's gaps at the largest size.

    A is the lowest loss at its largest size s_k; the origin is the size before it. For every
    other candidate j measured at both, the least-squares log-log line of each candidate
    through its points up to the origin forecasts the A − j log gap at s_k, persistence
    says it stays (study G3, ``docs/SELECTION_STUDY.md``).

    Parameters
    ----------
    curves : VisibleCurves

    Returns
    -------
    (closer, pairs) : tuple of int
        Pairs where persistence was closer than the lines, and pairs compared: candidates
        measured at both sizes with 2 points up to the origin, as A needs too (else 0, 0).
    """
    a = int(np.argmin([l[-1] for l in curves.losses]))
    if curves.sizes[a].size < 2:
        return 0, 0
    s_k, s_o = float(curves.sizes[a][-1]), float(curves.sizes[a][-2])
    cut = cut_visible(curves, s_o, target=s_k)
    with np.errstate(divide="ignore", invalid="ignore"):  # a line through one point is undefined: no pair
        forecast = _line_refit(cut)
    forecast[[s.size < 2 for s in cut.sizes]] = np.nan
    pairs = [(x, p) for x, p in _pair_errors(curves, a, forecast, s_o, s_k) if np.isfinite(x)]
    return sum(persist < extrap for extrap, persist in pairs), len(pairs)


def backtest_origins(visible, sizes, *, half=True, min_points=_MIN_POINTS) -> list:
    """The sizes below ``sizes[-1]`` = s_k that can serve as backtest origins.

    Parameters
    ----------
    visible : VisibleCurves
    sizes : ndarray
        One candidate's visible sizes, increasing; its largest is s_k.
    half : bool
        Only origins s_o ≤ s_k / 2 (at least one doubling of horizon).
    min_points : int
        Points every candidate of ``visible`` needs up to an origin.

    Returns
    -------
    list of float
    """
    s_k = sizes[-1]
    return [s_o for s_o in sizes[:-1] if (not half or s_o <= s_k / 2)
            and min(int(np.sum(s <= s_o)) for s in visible.sizes) >= min_points]


def _gap_at(visible, a, b, size):
    la = visible.losses[a][visible.sizes[a] == size][0]
    lb = visible.losses[b][visible.sizes[b] == size][0]
    return float(np.log(la) - np.log(lb))
