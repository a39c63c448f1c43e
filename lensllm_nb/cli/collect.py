"""Commands that collect curves: ``finetune`` and ``zoo build``.

``lensllm-nb finetune`` runs a grid of subset sizes × seeds for one model into a
results store (finished runs are skipped, so a killed grid resumes);
``lensllm-nb zoo build`` builds the offline model zoo (``export`` is in
:mod:`.store`).

Every input is validated before the store is opened, so bad input leaves no
store file behind and an existing store unchanged.
"""

from __future__ import annotations

import sys

from ..collection import zoo
from ..collection.finetune import FineTuner
from ..collection.resolve import load_task
from ..collection.settings import PRECISIONS, SCHEDULERS, cli_settings
from ..collection.store import mask_url
from ..errors import ConfigError

__all__ = ["register"]

# CLI flag -> FineTuner setting, from the settings' one declaration. Flags
# default to None so that "not given" can fall back to the zoo's demo settings
# for `--dataset zoo` and otherwise to FineTuner's defaults.
_SETTINGS = cli_settings()
_CHOICES = {"scheduler": SCHEDULERS, "precision": PRECISIONS}


def register(subparsers) -> None:
    """Add the ``finetune`` and ``zoo`` commands to `subparsers`."""
    _register_finetune(subparsers)
    _register_zoo(subparsers)


# ----------------------------------------------------------------- finetune
def _register_finetune(subparsers):
    parser = subparsers.add_parser(
        "finetune",
        help="fine-tune one model on nested subsets and store its test losses",
        description=(
            "Fine-tune MODEL on training subsets of each size (0 = zero-shot) and seed, "
            "and store the test loss of every run. Runs already in the store are skipped, "
            "so a killed grid resumes where it stopped. With --dataset zoo, settings not "
            "given take the zoo demo values (lensllm_nb.collection.zoo.DEMO_SETTINGS). A failed run is "
            "stored as failed with its error and the exit status is 1."
        ),
    )
    parser.add_argument("--model", required=True,
                        help="zoo/NAME, a local save_pretrained folder, or a Hugging Face Hub id")
    parser.add_argument("--dataset", required=True,
                        help="'zoo', a json/jsonl/csv/parquet file, a folder with train.* "
                             "(and test.*), or a hub id (ID or ID:CONFIG)")
    parser.add_argument("--sizes", required=True, help="comma-separated subset sizes, e.g. 0,16,32,64")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default: 0)")
    parser.add_argument("--store", required=True, help="results store: a SQLite file (results.db) or a database URL")
    parser.add_argument("--on-error", default="continue", choices=("continue", "raise"),
                        help="after a failed run is recorded: go on (default) or stop")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    training = parser.add_argument_group(
        "run settings (default: FineTuner's; with --dataset zoo: zoo.DEMO_SETTINGS)")
    for name, (kind, doc) in _SETTINGS.items():
        flag = "--" + name.replace("_", "-")
        text = doc.replace("``", "").replace("%", "%%")
        if kind is bool:
            training.add_argument(flag, action="store_const", const=True, default=None, help=text)
        else:
            training.add_argument(flag, type=kind, default=None, choices=_CHOICES.get(name), help=text)
    data = parser.add_argument_group("dataset settings")
    data.add_argument("--format", default="auto", choices=("auto", "text", "pairs"))
    data.add_argument("--text-column", default="text")
    data.add_argument("--input-column", default="input")
    data.add_argument("--target-column", default="target")
    data.add_argument("--test-size", default=None,
                      help="rows carved for the test split when there is none: a count or a fraction")
    data.add_argument("--val-size", default=None, help="rows carved for validation (early stopping)")
    parser.set_defaults(func=_finetune)


def _finetune(args) -> int:
    sizes = _int_list("--sizes", args.sizes)
    seeds = _int_list("--seeds", args.seeds)
    settings = {name: getattr(args, name) for name in _SETTINGS if getattr(args, name) is not None}
    if args.dataset == zoo.TASK_NAME:
        settings = {**zoo.DEMO_SETTINGS, **settings}
    task = load_task(args.dataset, **_dataset_options(args))
    tuner = FineTuner(args.model, progress=not args.no_progress, **settings)
    table = tuner.grid(task, sizes, seeds, args.store, on_error=args.on_error)
    summary = tuner.grid_summary_
    for row in table.to_dict("records"):
        loss = "failed: " + str(row["error"]) if row["status"] == "failed" else f"{row['test_loss']:.4f}"
        print(f"{args.model}\t{task.name}\tn_train={row['n_train']}\tseed={row['seed']}\t{loss}")
    print(
        f"{summary['run']} run(s), {summary['skipped']} skipped (already stored), "
        f"{summary['failed']} failed -> {mask_url(args.store)}",
        file=sys.stderr,
    )
    return 1 if summary["failed"] else 0


def _dataset_options(args):
    if args.dataset == zoo.TASK_NAME:
        options = {}
        for flag, value, default in (
            ("--format", args.format, "auto"), ("--text-column", args.text_column, "text"),
            ("--input-column", args.input_column, "input"),
            ("--target-column", args.target_column, "target"),
        ):
            if value != default:
                raise ConfigError(f"`{flag}` does not apply to --dataset zoo (fixed input/target columns).")
    else:
        options = {
            "format": args.format,
            "text_column": args.text_column,
            "input_column": args.input_column,
            "target_column": args.target_column,
        }
    if args.test_size is not None:
        options["test_size"] = _count_or_fraction("--test-size", args.test_size)
    if args.val_size is not None:
        options["val_size"] = _count_or_fraction("--val-size", args.val_size)
    return options


# ---------------------------------------------------------------------- zoo
def _register_zoo(subparsers):
    parser = subparsers.add_parser(
        "zoo", help="the offline model zoo",
        description="The offline model zoo: small pretrained candidates and a task built on this machine.",
    )
    parser.set_defaults(func=lambda args: _print_help(parser))
    commands = parser.add_subparsers(dest="zoo_command", metavar="COMMAND")
    build = commands.add_parser(
        "build", help="build (or reuse) the zoo and list its candidates",
        description="Build the zoo task, tokenizer and candidates (cached), then print one line "
                    "per candidate: name, path, parameter count.",
    )
    build.add_argument("--models", default=None, help="comma-separated candidates (default: all)")
    build.add_argument("--force", action="store_true", help="rebuild even when cached")
    build.set_defaults(func=_zoo_build)


def _zoo_build(args) -> int:
    names = None if args.models is None else [n.strip() for n in args.models.split(",") if n.strip()]
    for model in zoo.build(names, force=args.force, progress=sys.stderr.isatty()):
        print(f"{model.name}\t{model.path}\t{model.params}")
    return 0


def _print_help(parser):
    parser.print_help()
    return 2


# ------------------------------------------------------------------ parsing
def _int_list(flag, text):
    items = [item.strip() for item in str(text).split(",")]
    values = []
    for item in items:
        try:
            values.append(int(item))
        except ValueError:
            raise ConfigError(
                f"`{flag}` must be comma-separated whole numbers such as 0,16,32; got {item!r} in {text!r}."
            ) from None
    return values


def _count_or_fraction(flag, text):
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"`{flag}` must be a count such as 256 or a fraction such as 0.1; got {text!r}.") from None

