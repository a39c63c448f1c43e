"""``BaseEstimator``: the settings, fitted check and repr shared by laws and selectors.

As in scikit-learn: settings are the keyword arguments of ``__init__``, stored
unchanged; ``get_params``/``set_params`` read and change them; a fit sets
attributes with a trailing underscore, and ``is_fitted`` looks for one of them.
"""

from __future__ import annotations

import inspect

from ..errors import ConfigError, NotFittedError

__all__ = ["BaseEstimator"]


class BaseEstimator:
    """Settings in ``__init__``, results in ``name_`` attributes.

    Subclasses name in ``_fitted_attribute`` the attribute that a fit sets and in
    ``_fit_call`` how to fit (for the not-fitted message).
    """

    _fitted_attribute = ""
    _fit_call = "fit(...)"

    @classmethod
    def _setting_names(cls) -> list:
        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def get_params(self) -> dict:
        """Return the settings given to ``__init__``."""
        return {name: getattr(self, name) for name in self._setting_names()}

    def set_params(self, **params):
        """Change settings (scikit-learn style); unknown names raise. Returns self."""
        valid = self._setting_names()
        unknown = sorted(set(params) - set(valid))
        if unknown:
            raise ConfigError(f"unknown setting(s) {unknown} for {type(self).__name__}; "
                              f"valid settings are {sorted(valid)}.")
        for key, value in params.items():
            setattr(self, key, value)
        return self

    def is_fitted(self) -> bool:
        """Whether :meth:`fit` has run."""
        return hasattr(self, self._fitted_attribute)

    def _check_is_fitted(self):
        if not self.is_fitted():
            raise NotFittedError(f"{type(self).__name__} is not fitted; call `{self._fit_call}` first.")

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"
