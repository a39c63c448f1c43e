"""lensllm-nb: pick the pretrained LLM to fine-tune from small-subset fine-tuning curves.

One subpackage per layer, imports going down only: ``cli`` → ``workflow`` (notebook
curves, tables, plots, batches, reports) → ``collection`` (fine-tuning runs, the
zoo, the store) → ``analysis`` (curves, laws, prediction, selection; no torch), with
``utils`` and ``errors`` below them. Importing the package loads nothing heavy;
import the pieces you use, e.g. ``from lensllm_nb.analysis.curve_fits import fit_curves``.
"""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("lensllm-nb")
except _metadata.PackageNotFoundError:  # running from a source tree without install
    __version__ = "0+unknown"

__all__ = ["__version__"]
