"""lensllm-nb: pick the pretrained LLM to fine-tune from small-subset fine-tuning curves.

The package is split into one module per concept (see DEVELOPERS.md); importing it
loads nothing heavy, so ``import lensllm_nb`` is cheap in a notebook. Import the
pieces you use, e.g. ``from lensllm_nb.analysis.curve_fits import fit_curves``.
"""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("lensllm-nb")
except _metadata.PackageNotFoundError:  # running from a source tree without install
    __version__ = "0+unknown"

__all__ = ["__version__"]
