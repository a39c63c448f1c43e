"""The argument checks shared across layers, one definition each.

Each raises :class:`~lensllm_nb.errors.ConfigError` naming the argument, the value
received and the fix, as notebook users see them.
"""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd

from ..errors import ConfigError

__all__ = ["check_choice", "check_columns", "check_positive_sizes", "check_subset_sizes", "first_line"]


def check_choice(name, value, choices, *, fix=None) -> None:
    """Raise ConfigError unless `value` is one of `choices`.

    Parameters
    ----------
    name : str
        The argument name used in the error message.
    value : object
    choices : sequence
    fix : str, optional
        Appended to the message after a semicolon, e.g. ``"pass e.g. sketch='countsketch'"``.
    """
    if value not in choices:
        raise ConfigError(f"`{name}` must be one of {choices}, got {value!r}" + (f"; {fix}." if fix else "."))


def check_columns(frame, arg, required):
    """Raise ConfigError unless `frame` is a DataFrame with the `required` columns.

    Parameters
    ----------
    frame : object
    arg : str
        The argument name used in error messages.
    required : sequence of str
    """
    if not isinstance(frame, pd.DataFrame):
        raise ConfigError(f"`{arg}` must be a pandas DataFrame, got {type(frame).__name__}.")
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ConfigError(
            f"`{arg}` lacks column(s) {', '.join(missing)}; it has "
            f"{', '.join(map(str, frame.columns)) or 'none'}. Pass a table with "
            f"{', '.join(required)}."
        )



def check_positive_sizes(D, name):
    """Return `D` as a float array of positive, finite training sizes (a law's x axis).

    Parameters
    ----------
    D : array-like
    name : str
        The argument name used in error messages.
    """
    try:
        arr = np.asarray(D, dtype=float)
    except (TypeError, ValueError):
        raise ConfigError(f"`{name}` must be numbers, got {D!r}.") from None
    bad = arr[~np.isfinite(arr) | (arr <= 0)]
    if bad.size:
        raise ConfigError(f"`{name}` must be positive, finite sizes, got {bad[:5].tolist()}; "
                          "leave out the zero-shot point D = 0.")
    return arr



def check_subset_sizes(sizes, *, limit=None, name="sizes") -> tuple:
    """Validate training-subset sizes and return them sorted without duplicates.

    Parameters
    ----------
    sizes : iterable of int
        Numbers of training examples; 0 means zero-shot (no fine-tuning).
    limit : int, optional
        The largest size allowed (the size of the training pool).
    name : str
        The argument name used in error messages.

    Returns
    -------
    tuple of int

    Raises
    ------
    ConfigError
        For an empty list, a value that is not an integer, a negative value, or a
        value above `limit`.
    """
    if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__iter__"):
        raise ConfigError(
            f"`{name}` must be a list of integers such as [0, 16, 32]; got {sizes!r}."
        )
    values = list(sizes)
    if not values:
        raise ConfigError(f"`{name}` is empty; pass at least one size such as [0, 16, 32].")
    out = []
    for value in values:
        # bool is an int subclass and 16.0 is "integral", but both are almost
        # always a mistake in a list of example counts.
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ConfigError(
                f"`{name}` must contain whole numbers of examples; got {value!r} "
                f"({type(value).__name__}). Use integers such as 16, 32, 64."
            )
        if value < 0:
            raise ConfigError(
                f"`{name}` must be non-negative (0 is zero-shot); got {int(value)}."
            )
        if limit is not None and value > limit:
            raise ConfigError(
                f"`{name}` asks for {int(value)} training examples but the training "
                f"split has only {limit}; use sizes up to {limit} or a larger dataset."
            )
        out.append(int(value))
    return tuple(sorted(set(out)))



def first_line(exc) -> str:
    """The first line of an exception's message (for one-line error reports)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no message"
