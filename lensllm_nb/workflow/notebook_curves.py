"""One way to get the curves a notebook, the widget or the CLI works on.

Curves come from a results store (notebook 01 writes one), a curves file (tidy
CSV/Parquet or the wide benchmark layout) or a benchmark name
(:func:`lensllm_nb.analysis.published_curves.load`). :func:`prepare_curves` then picks the
dataset and the models, chooses the default budget and target, and averages the
seeds, so that notebooks 02–04, the comparison widget and ``lensllm-nb`` agree on
what "the default budget" means. Every bad choice raises a
:class:`~lensllm_nb.errors.ConfigError` that names the argument, the value and
the fix.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..analysis.curves import MIN_POSITIVE_SIZES, aggregate_seeds, read_curves, validate_curves
from ..analysis.metrics import budget_warning
from ..analysis.published_curves import load as load_benchmark
from ..collection.display_names import PATH_COLUMNS, with_display_names
from ..collection.store import ResultsStore, is_url, mask_url
from ..errors import ConfigError

__all__ = ["DEFAULT_RATIO", "PreparedCurves", "load_curves", "prepare_curves", "default_budget",
           "choose_dataset", "choose_models", "stored_ntk"]

# Default budget: target / 64, one of the protocol's ratios, which costs a few
# percent of fine-tuning every candidate on the target.
DEFAULT_RATIO = 64
_FILE_SUFFIXES = (".csv", ".parquet", ".pq")


@dataclass(frozen=True)
class PreparedCurves:
    """The curves of one dataset, ready to fit, predict or plot.

    Attributes
    ----------
    table : pandas.DataFrame
        Validated tidy rows of ``dataset`` and ``models`` (every seed kept).
    means : pandas.DataFrame
        One row per (model, dataset, n_train): seed mean ``test_loss``,
        ``test_loss_std``, ``n_seeds`` (:func:`~lensllm_nb.analysis.curves.aggregate_seeds`).
    loaded : pandas.DataFrame
        The whole validated source, every dataset (the widget's dataset choice).
    dataset : str
    models : list of str
        Sorted candidate names.
    sizes : list of int
        Measured positive sizes of the dataset, increasing.
    target : int
        Size whose loss is predicted.
    max_train : int
        Budget: the largest visible size.
    source : str
        Where the curves came from (store, file or benchmark name).
    """

    table: pd.DataFrame = field(repr=False)
    means: pd.DataFrame = field(repr=False)
    loaded: pd.DataFrame = field(repr=False)
    dataset: str
    models: list
    sizes: list
    target: int
    max_train: int
    source: str

    @property
    def budgets(self) -> list:
        """Measured sizes usable as a budget: at least 3 visible sizes, below the target."""
        return [n for n in self.sizes[MIN_POSITIVE_SIZES - 1:] if n < self.target]

    @property
    def targets(self) -> list:
        """Measured sizes usable as a target: at least 3 measured sizes below each."""
        return self.sizes[MIN_POSITIVE_SIZES:]

    @property
    def truth(self) -> pd.Series:
        """Seed-mean loss at ``target`` per model (only the models measured there)."""
        at = self.means[self.means["n_train"] == self.target]
        return at.set_index("model")["test_loss"].rename("true")

    def describe(self, cost=False) -> str:
        """One line for a notebook: dataset, models, sizes, budget and target.

        With ``cost=True`` a second line says when the budget's sizes cost more than
        1/8 of fine-tuning every candidate on the target
        (:func:`~lensllm_nb.analysis.metrics.budget_warning`), and how to lower it.
        """
        line = (f"{self.dataset}: {len(self.models)} models, sizes {self.sizes[0]:,}–{self.sizes[-1]:,} "
                f"({len(self.sizes)} measured), budget ≤ {self.max_train:,}, target {self.target:,} "
                f"(from {self.source})")
        warning = budget_warning(self.table, max_train=self.max_train, target=self.target) if cost else None
        return line if warning is None else f"{line}\n{warning}"


def load_curves(curves=None, *, store=None, dataset=None, drop_invalid=False, names=None) -> pd.DataFrame:
    """Read a validated tidy curves table from a store, a file, a benchmark name or a table.

    Parameters
    ----------
    curves : str, Path or pandas.DataFrame, optional
        A curves file, a benchmark name (``"flan"``, ``"gigaword"``, ...) or a
        table. Ignored when ``store`` is given.
    store : str or Path, optional
        A results store written by notebook 01 or ``lensllm-nb finetune`` (a file
        path or a database URL); its finished runs are read.
    dataset : str, optional
        Keep only this dataset.
    drop_invalid : bool
        Drop invalid rows of a curves file (listed in a warning) instead of refusing it.
    names : dict, optional
        Display names ``{path or name: short name}`` overriding the default ones
        (:func:`lensllm_nb.collection.display_names.display_names`).

    Returns
    -------
    pandas.DataFrame
        Validated tidy table whose ``model`` and ``dataset`` are display names (a
        path's last part); the full names are in ``model_path`` and ``dataset_path``.
        ``attrs["source"]`` says where it came from.

    Raises
    ------
    ConfigError
        When neither source is given, the store or file does not exist, the
        name is no benchmark, or ``dataset`` is not in the curves.
    CurveDataError
        When the curves themselves are malformed.
    """
    if store:
        table = _read_store(store)
    elif isinstance(curves, pd.DataFrame):
        table = validate_curves(curves, source=curves.attrs.get("source", "<table>"))
    elif isinstance(curves, (str, Path)) and str(curves).strip():
        table = _read_path_or_name(curves, drop_invalid)
    else:
        raise ConfigError(f"`curves` = {curves!r} names no curves and `store` is empty; pass a curves file, "
                          "a benchmark name such as 'flan', or the results store of notebook 01.")
    table = with_display_names(table, names)
    if dataset is not None:
        table = table[table["dataset"] == choose_dataset(table, dataset)]
    return table


def prepare_curves(curves=None, *, store=None, dataset=None, models=None, max_train=None, target=None,
                   default_ratio=DEFAULT_RATIO, names=None) -> PreparedCurves:
    """Load curves and choose the dataset, the models, the target and the budget.

    Parameters
    ----------
    curves, store
        As in :func:`load_curves`.
    dataset : str, optional
        Default: the first dataset in sorted order.
    models : str or list of str, optional
        Candidates; default every model of the dataset. A single name is one model.
    max_train : int, optional
        Budget (largest visible size). Default :func:`default_budget` with
        ``default_ratio``.
    target : int, optional
        Size whose loss is predicted; default the largest measured size.
    default_ratio : int, default 64
        The default budget is the largest measured size ≤ ``target / default_ratio``;
        ``1`` means every size below the target (the target held out).
    names : dict, optional
        Display names, as in :func:`load_curves`.

    Returns
    -------
    PreparedCurves
    """
    loaded = load_curves(curves, store=store, names=names)
    dataset = choose_dataset(loaded, dataset)
    rows = loaded[loaded["dataset"] == dataset]
    chosen = choose_models(rows, models, dataset=dataset)
    rows = rows[rows["model"].isin(chosen)].reset_index(drop=True)
    rows.attrs.update(loaded.attrs)
    sizes = sorted(int(n) for n in rows["n_train"].unique() if n > 0)
    target = _check_target(target, sizes, dataset)
    if max_train is None:
        max_train = default_budget(sizes, target, ratio=default_ratio)
    max_train = _check_budget(max_train, sizes, target)
    return PreparedCurves(table=rows, means=aggregate_seeds(rows), loaded=loaded, dataset=dataset,
                          models=chosen, sizes=sizes, target=target, max_train=max_train,
                          source=str(loaded.attrs.get("source", "<table>")))


def default_budget(sizes, target, *, ratio=DEFAULT_RATIO) -> int:
    """The largest measured size ≤ ``target / ratio`` (and below ``target``), at least the third size.

    Parameters
    ----------
    sizes : list of int
        Measured positive sizes, increasing.
    target : int
    ratio : int, default 64
        Budget ratio of the benchmark protocol; 1 holds out only the target.
    """
    if not _is_int(ratio) or ratio < 1:
        raise ConfigError(f"`default_ratio` must be an integer ≥ 1, got {ratio!r}; 64 is the default, "
                          "1 fits every size below the target.")
    below = [n for n in sizes if n <= target / ratio and n < target]
    return int(max(below + [sizes[MIN_POSITIVE_SIZES - 1]]))


def choose_dataset(table, dataset=None) -> str:
    """Return ``dataset`` after checking it is in ``table``; default the first in sorted order."""
    datasets = sorted(table["dataset"].unique())
    if dataset is None:
        return datasets[0]
    dataset = _display_of(table, "dataset", [dataset])[0]
    if str(dataset) not in datasets:
        raise ConfigError(f"`dataset` = {dataset!r} is not in the curves; choose one of {datasets}.")
    return str(dataset)


def choose_models(table, models=None, *, dataset=None) -> list:
    """Return the sorted candidates: ``models`` checked against ``table``, default all of them."""
    available = sorted(table["model"].unique())
    if models is None:
        return available
    names = [models] if isinstance(models, str) else list(models)
    if not names:
        raise ConfigError("`models` is empty; pass None for every model or a list of model names.")
    names = _display_of(table, "model", names)
    unknown = sorted(set(map(str, names)) - set(available))
    if unknown:
        where = f" of dataset {dataset!r}" if dataset is not None else ""
        more = ", ..." if len(available) > 10 else ""
        raise ConfigError(f"`models` has {unknown[:5]}, not among the {len(available)} models{where}; "
                          f"choose from {available[:10]}{more}.")
    return sorted(set(map(str, names)))


def stored_ntk(store, curves, names=None) -> dict | None:
    """The NTK features notebook 01 stored for every candidate of ``curves``, else None.

    Without a store, the features the curves table carries (``attrs["ntk"]``, as
    ``published_curves.load("zoo_corpus")`` sets them) when every candidate has them.

    Parameters
    ----------
    store : str or Path
        The results store; empty or None: the table's own features, if any.
    curves : PreparedCurves
    names : dict, optional
        The display names `curves` was prepared with.

    Returns
    -------
    dict or None
        model -> NTK features when every candidate has them (the LensLLM law
        then uses them for its pre-learned term), otherwise None.
    """
    if not store:
        carried = (curves.table.attrs.get("ntk") or {}).get(curves.dataset) or {}
        return {model: carried[model] for model in curves.models} if set(curves.models) <= set(carried) else None
    with ResultsStore(store, readonly=True) as opened:
        runs = opened.runs(status="ok")
    shown = with_display_names(runs, names)
    runs = runs[(shown["dataset"] == curves.dataset) & runs["ntk"].notna()]
    found = dict(zip(shown.loc[runs.index, "model"], runs["ntk"]))
    return {model: found[model] for model in curves.models} if set(curves.models) <= set(found) else None


def _display_of(table, column, names) -> list:
    """`names` given as full names (a store's paths) turned into the table's display names."""
    path_column = PATH_COLUMNS[column]
    if path_column not in table.columns:
        return list(names)
    shown = dict(zip(table[path_column].astype(str), table[column]))
    return [shown.get(str(name), name) for name in names]


def _read_store(store) -> pd.DataFrame:
    text = mask_url(store)
    if not is_url(store) and not Path(store).is_file():
        raise ConfigError(f"`store` = {text!r} does not exist; run notebook 01 (or `lensllm-nb finetune`) "
                          "to write it, or leave `store` empty and set `curves`.")
    with ResultsStore(store, readonly=True) as opened:
        table = opened.curves()
        runs = opened.runs(status="ok")
    if table.empty:
        raise ConfigError(f"`store` = {text!r} holds no finished runs yet; run notebook 01 first.")
    table.attrs["source"] = text
    # The NTK features travel with the table, so the `lensllm` selector finds them.
    probed = runs[runs["ntk"].notna()]
    table.attrs["ntk"] = {str(d): dict(zip(part["model"], part["ntk"])) for d, part in probed.groupby("dataset")}
    return validate_curves(table, source=text)


def _read_path_or_name(curves, drop_invalid) -> pd.DataFrame:
    path = Path(curves)
    if path.is_file():
        return read_curves(path, drop_invalid=drop_invalid)
    if path.suffix.lower() in _FILE_SUFFIXES or len(path.parts) > 1:
        raise ConfigError(f"`curves` = {str(curves)!r} does not exist; check the path, or pass a benchmark "
                          "name such as 'flan' or 'gigaword'.")
    return load_benchmark(str(curves))


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_target(target, sizes, dataset) -> int:
    if len(sizes) <= MIN_POSITIVE_SIZES:
        raise ConfigError(f"dataset {dataset!r} has only {len(sizes)} measured positive sizes {sizes}; "
                          f"predicting needs at least {MIN_POSITIVE_SIZES} visible sizes and a larger target.")
    if target is None:
        return sizes[-1]
    if not _is_int(target) or target not in sizes[MIN_POSITIVE_SIZES:]:
        raise ConfigError(f"`target` = {target!r} is not a measured size with {MIN_POSITIVE_SIZES} sizes "
                          f"below it; choose one of {sizes[MIN_POSITIVE_SIZES:]} or None for the largest.")
    return int(target)


def _check_budget(max_train, sizes, target) -> int:
    usable = [n for n in sizes[MIN_POSITIVE_SIZES - 1:] if n < target]
    if not _is_int(max_train) or not usable[0] <= max_train < target:
        raise ConfigError(f"`max_train` = {max_train!r} must be an integer from {usable[0]:,} (3 visible "
                          f"sizes) to below `target` = {target:,}; measured sizes: {usable}.")
    return int(max_train)
