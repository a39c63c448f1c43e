"""Collection: fine-tuning runs on nested subsets, names into models and tasks, the zoo, the store.

torch, transformers, datasets and peft are imported inside the functions that use
them; the names below load their module on first use.
"""

from importlib import import_module as _import_module

_PUBLIC = {
    "TaskData": "data", "TokenizedTask": "tokenizing", "Collator": "tokenizing", "tokenize": "tokenizing",
    "load_task": "resolve", "resolve_model": "resolve", "load_model": "resolve",
    "FineTuneSettings": "settings", "FineTuner": "finetune", "run_grid": "finetune",
    "compute_ntk": "ntk", "ResultsStore": "store",
    "with_display_names": "display_names",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name):
    if name in _PUBLIC:
        return getattr(_import_module(f".{_PUBLIC[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
