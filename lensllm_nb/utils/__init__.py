"""Shared helpers of every layer: run records, safe output, argument checks.

``provenance`` (config hashes, run records, the cache folder), ``safe_output``
(strict JSON, escaped HTML/Markdown/mathtext, safe file names) and ``validation``
(the checks behind the project's error messages). Import from the modules.
"""

__all__ = ["provenance", "safe_output", "validation"]
