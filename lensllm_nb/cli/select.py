"""``lensllm-nb select``: rank candidates with the prediction engine."""

from __future__ import annotations

import sys

from ..analysis.metrics import budget_warning
from ..analysis.predict import DEFAULT_METHOD, PREDICTIVE_METHODS, predict_candidates
from ..analysis.selection import LENSLLM_NOTES
from ..errors import ConfigError
from ..utils.safe_output import strict_json
from .core import _one_dataset, _read

__all__ = ["register"]


def register(subparsers) -> None:
    """Add the ``select`` sub-command."""
    sel = subparsers.add_parser(
        "select",
        help="rank candidate models by their predicted loss at a target size",
        description=(
            "Ignores every size above --max-train (as the benchmark protocol does) and predicts each "
            "model's loss at --target (default: the largest size in the file), with an interval at "
            "--level, the probability of being best (p_best), the expected regret (in log loss: 0.01 is "
            "about 1% of loss) and the pick with the reason for it (it can differ from the lowest "
            "prediction). CURVES is a tidy "
            "or wide-layout CSV/Parquet file, a benchmark name (flan, gigaword, wmt19, lcdb_dev), or a results "
            "store (notebook 01's results.db or a database URL), whose NTK features `--method lensllm` uses "
            "(the table output says which law it ran)."
        ),
    )
    sel.add_argument("curves", metavar="CURVES")
    sel.add_argument("--max-train", type=int, required=True, help="largest training size that may be used")
    sel.add_argument("--target", type=int, default=None, help="size to predict (default: largest in the file)")
    sel.add_argument("--method", default=DEFAULT_METHOD, choices=PREDICTIVE_METHODS,
                     help="prediction method (default: %(default)s)")
    sel.add_argument("--level", type=float, default=0.9, help="interval level (default: %(default)s)")
    sel.add_argument("--dataset", default=None, help="dataset to use when the file holds several")
    sel.add_argument("--format", choices=("table", "json"), default="table")
    sel.set_defaults(func=_select)


def _select(args) -> int:
    if args.max_train <= 0:
        raise ConfigError(f"`--max-train` must be a positive size, got {args.max_train}.")
    table = _read(args.curves, args.dataset)
    result = predict_candidates(table, max_train=args.max_train, target=args.target, method=args.method,
                                level=args.level, dataset=_one_dataset(table, args.curves))
    rows = table if result.dataset is None else table[table["dataset"] == result.dataset]
    warning = budget_warning(rows[rows["model"].isin(result.frame["model"])], max_train=result.max_train,
                             target=result.target)
    if warning:  # stderr: the JSON on stdout stays the contract
        print(warning, file=sys.stderr)
    if args.format == "json":
        print(strict_json(result.to_json_dict(), indent=2))
        return 0
    print(f"dataset {result.dataset}, method {result.method}, sizes <= {result.max_train} used, "
          f"loss predicted at {result.target}, {result.level:.0%} intervals, "
          f"cost {result.cost_fraction:.2%} of fine-tuning every model on the target")
    print(result.frame.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if result.variant in LENSLLM_NOTES:
        print(f"{result.method}: {LENSLLM_NOTES[result.variant]}")
    print(f"chosen: {result.chosen}")
    print(f"why: {result.chosen_reason}")
    return 0
