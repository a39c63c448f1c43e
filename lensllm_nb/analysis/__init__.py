"""Analysis core: curves, laws and fits, prediction, selection, the benchmark protocol.

numpy, scipy and pandas only (import-linter keeps torch and friends out). The
names below load their module on first use, so ``import lensllm_nb.analysis``
stays cheap.
"""

from importlib import import_module as _import_module

_PUBLIC = {
    "read_curves": "curves", "validate_curves": "curves", "aggregate_seeds": "curves",
    "VisibleCurves": "visible", "visible_curves": "visible",
    "load": "published_curves",
    "PowerLaw": "laws", "RectifiedLaw": "laws", "LensLLMLaw": "laws", "make_law": "laws",
    "fit_curves": "curve_fits", "NTKFeatures": "ntk_features",
    "DEFAULT_METHOD": "selection", "SELECTORS": "selection", "make_selector": "selection",
    "predict_candidates": "predict", "ProgressiveSelector": "progressive", "run_benchmark": "protocol",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name):
    if name in _PUBLIC:
        return getattr(_import_module(f".{_PUBLIC[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
