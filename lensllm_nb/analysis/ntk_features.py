"""The NTK features a law reads: a numpy value, free of torch.

:class:`NTKFeatures` holds the empirical NTK Gram matrix Θ of a pretrained model
on a probe set, its spectrum and the losses before fine-tuning, and evaluates
F(Θ, t) = ‖exp(−ηΘt)(f0 − y)‖², the term the LensLLM law puts where the
rectified law has D_l. It lives apart from :mod:`lensllm_nb.collection.ntk`, which computes
it with torch, so that the analysis core (:mod:`lensllm_nb.analysis.laws`, the results
store) reads stored features without importing the collection side.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from ..utils.validation import check_choice

__all__ = ["NTKFeatures", "SKETCHES"]

SKETCHES = ("countsketch", "rademacher", "exact")

_ARRAY_FIELDS = ("gram", "eigvals", "eigvecs", "f0", "target")
_META_FIELDS = ("sketch_dim", "sketch", "n_params", "seconds", "seed")


@dataclass(eq=False)
class NTKFeatures:
    """The empirical NTK of one model on one probe set, and what the law needs of it.

    Build it with :func:`compute_ntk`, :meth:`from_gram` or :meth:`from_dict`.

    Parameters
    ----------
    gram : numpy.ndarray, shape (n, n)
        The NTK Gram matrix Θ (float64, symmetric positive semi-definite).
    eigvals : numpy.ndarray, shape (n,)
        Eigenvalues of Θ, descending, negative round-off clipped to 0.
    eigvecs : numpy.ndarray, shape (n, n)
        Matching eigenvectors in columns.
    f0 : numpy.ndarray, shape (n,)
        Per-example losses of the model before fine-tuning (θ0).
    target : numpy.ndarray, shape (n,), optional
        The losses that fine-tuning drives toward; zeros by default.
    sketch_dim : int
        k, the dimension of the sketched gradients (the parameter count for
        ``sketch='exact'``).
    sketch : {'countsketch', 'rademacher', 'exact'}
        How the gradients were compressed.
    n_params : int
        Number of trainable parameters the gradients were taken over.
    seconds : float
        Wall time of the computation.
    seed : int
        Seed of the sketch.
    """

    gram: np.ndarray
    eigvals: np.ndarray
    eigvecs: np.ndarray
    f0: np.ndarray
    target: np.ndarray | None = None
    sketch_dim: int = 0
    sketch: str = "exact"
    n_params: int = 0
    seconds: float = 0.0
    seed: int = 0

    def __post_init__(self):
        # Copies, so the features never alias (and never mutate) the caller's arrays.
        self.gram = _float_array("gram", self.gram, ndim=2)
        n = self.gram.shape[0]
        if n == 0 or self.gram.shape != (n, n):
            raise ConfigError(f"`gram` must be a non-empty square matrix, got shape {self.gram.shape}.")
        if self.target is None:
            self.target = np.zeros(n)
        for name, shape in (("eigvals", (n,)), ("eigvecs", (n, n)), ("f0", (n,)), ("target", (n,))):
            value = _float_array(name, getattr(self, name), ndim=len(shape))
            if value.shape != shape:
                raise ConfigError(f"`{name}` must have shape {shape} to match `gram`, got {value.shape}.")
            setattr(self, name, value)
        check_choice("sketch", self.sketch, SKETCHES)

    @classmethod
    def from_gram(cls, gram, f0, target=None, **meta) -> "NTKFeatures":
        """Build features from a Gram matrix, computing its eigendecomposition.

        Parameters
        ----------
        gram : array_like, shape (n, n)
            The NTK; symmetrised before the decomposition.
        f0, target : array_like, shape (n,)
            Losses at θ0 and the losses to drive toward (zeros when None).
        **meta
            ``sketch_dim``, ``sketch``, ``n_params``, ``seconds``, ``seed``.
        """
        gram = _float_array("gram", gram, ndim=2)
        if gram.ndim != 2 or gram.shape[0] != gram.shape[1] or gram.shape[0] == 0:
            raise ConfigError(f"`gram` must be a non-empty square matrix, got shape {gram.shape}.")
        symmetric = (gram + gram.T) / 2.0
        eigvals, eigvecs = np.linalg.eigh(symmetric)
        # eigh returns ascending order; the law and the summary read the top first.
        eigvals, eigvecs = eigvals[::-1], eigvecs[:, ::-1]
        # A PSD matrix has no negative eigenvalues; those found are round-off, and
        # keeping them would make F(Θ, t) grow with t.
        eigvals = np.clip(eigvals, 0.0, None)
        return cls(gram=symmetric, eigvals=eigvals, eigvecs=eigvecs, f0=f0, target=target, **meta)

    @property
    def n(self) -> int:
        """Number of probe examples."""
        return self.gram.shape[0]

    def F(self, t, eta=1.0):
        """Squared residual F(Θ, t) = ‖exp(−ηΘt)(f0 − y)‖² of linearised training.

        Parameters
        ----------
        t : float or array_like
            Training time(s), ≥ 0. Vectorized over any array shape.
        eta : float, default 1.0
            Learning rate; only the product η·t matters.

        Returns
        -------
        float or numpy.ndarray
            A float for a scalar ``t``, else an array of ``t``'s shape.
            F(0) = ‖f0 − y‖² and F never increases with t.
        """
        times = np.asarray(t, dtype=float)
        if not np.all(np.isfinite(times)) or np.any(times < 0):
            raise ConfigError(f"`t` must be finite and ≥ 0, got {t!r}; pass training times such as "
                              "np.array([0, 10, 100]).")
        if isinstance(eta, bool) or not isinstance(eta, numbers.Real) or not math.isfinite(eta) or eta <= 0:
            raise ConfigError(f"`eta` must be a finite positive number, got {eta!r}; pass e.g. eta=1.0.")
        # In the eigenbasis, exp(−ηΘt) is diagonal: each component of the
        # residual decays independently with its own eigenvalue.
        weights = (self.eigvecs.T @ (self.f0 - self.target)) ** 2
        values = np.exp(-2.0 * eta * times[..., None] * self.eigvals) @ weights
        return float(values) if times.ndim == 0 else values

    def spectrum_summary(self) -> dict:
        """Scalar descriptors of the NTK spectrum.

        Returns
        -------
        dict
            ``n``, ``trace``, ``top_eigenvalue``, ``min_eigenvalue``,
            ``frobenius_norm``, ``effective_rank_trace`` (trace / top
            eigenvalue), ``effective_rank_entropy`` (exp of the entropy of the
            normalised spectrum), ``numerical_rank`` (eigenvalues above
            n·eps·top), ``condition_number`` (top over the smallest eigenvalue
            within the numerical rank; None for a zero kernel),
            ``residual_norm2`` (F at t = 0), ``sketch`` and ``sketch_dim``.
        """
        lam = self.eigvals
        top = float(lam[0])
        total = float(lam.sum())
        tolerance = top * self.n * np.finfo(float).eps
        kept = lam[lam > tolerance]
        if total > 0:
            p = lam[lam > 0] / total
            entropy_rank = float(np.exp(-(p * np.log(p)).sum()))
        else:
            entropy_rank = 0.0
        return {
            "n": self.n,
            "trace": float(np.trace(self.gram)),
            "top_eigenvalue": top,
            "min_eigenvalue": float(lam[-1]),
            "frobenius_norm": float(np.linalg.norm(self.gram)),
            "effective_rank_trace": total / top if top > 0 else 0.0,
            "effective_rank_entropy": entropy_rank,
            "numerical_rank": int(kept.size),
            "condition_number": float(top / kept[-1]) if kept.size else None,
            "residual_norm2": self.F(0.0),
            "sketch": self.sketch,
            "sketch_dim": int(self.sketch_dim),
        }

    def to_dict(self) -> dict:
        """Return a JSON-serialisable dict (the results store's ``ntk`` column).

        It holds every field plus ``spectrum`` (:meth:`spectrum_summary`), so
        the store can be queried without rebuilding the features.
        """
        out = {name: getattr(self, name).tolist() for name in _ARRAY_FIELDS}
        out.update(sketch_dim=int(self.sketch_dim), sketch=self.sketch, n_params=int(self.n_params),
                   seconds=float(self.seconds), seed=int(self.seed))
        out["spectrum"] = self.spectrum_summary()
        return out

    @classmethod
    def from_dict(cls, d) -> "NTKFeatures":
        """Rebuild features from :meth:`to_dict` output (``spectrum`` is derived, so ignored)."""
        if not isinstance(d, Mapping):
            raise ConfigError(f"`d` must be a dict made by NTKFeatures.to_dict(), got {type(d).__name__}.")
        missing = [k for k in (*_ARRAY_FIELDS, *_META_FIELDS) if k not in d]
        if missing:
            raise ConfigError(f"`d` lacks key(s) {missing}; pass a dict made by NTKFeatures.to_dict().")
        return cls(**{k: d[k] for k in (*_ARRAY_FIELDS, *_META_FIELDS)})


def _float_array(name, value, *, ndim):
    try:
        array = np.array(value, dtype=float)
    except (TypeError, ValueError):
        raise ConfigError(f"`{name}` must be a numeric array, got {type(value).__name__}.") from None
    if array.ndim != ndim:
        raise ConfigError(f"`{name}` must be {ndim}-dimensional, got shape {array.shape}.")
    if not np.all(np.isfinite(array)):
        raise ConfigError(f"`{name}` contains NaN or infinite values; an NTK must be finite "
                          "(check the model's losses on the probe set).")
    return array
