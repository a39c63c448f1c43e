"""Exceptions raised for notebook users.

Every message names the argument in backticks, the value received and the fix,
so a notebook cell fails with one readable line instead of a numpy traceback.
"""

__all__ = [
    "LensLLMError",
    "ConfigError",
    "CurveDataError",
    "FitError",
    "NotFittedError",
    "FinetuneError",
    "StoreError",
    "BatchError",
]


class LensLLMError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(LensLLMError, ValueError):
    """A setting or argument has a value the toolkit cannot use."""


class CurveDataError(LensLLMError, ValueError):
    """A curves table or file is malformed (names file, row and column)."""


class FitError(LensLLMError, RuntimeError):
    """A law could not be fitted to a curve (names the model and the reason)."""


class NotFittedError(LensLLMError, AttributeError):
    """An estimator was used before ``fit`` ran (distinct from a fit that failed)."""


class FinetuneError(LensLLMError, RuntimeError):
    """A fine-tuning run could not be set up or failed."""


class StoreError(LensLLMError, RuntimeError):
    """The results store could not be read or written."""


class BatchError(LensLLMError, RuntimeError):
    """A batch of notebooks could not be expanded or executed."""
