"""``lensllm-nb benchmark`` and ``lensllm-nb fit``."""

from __future__ import annotations

import sys
from pathlib import Path

from ..analysis.selection import DEFAULT_METHOD
from ..collection.store import is_url, mask_url
from ..errors import ConfigError
from ..utils.safe_output import strict_json, write_inside
from ..workflow.notebook_curves import load_curves

__all__ = ["register"]


def register(subparsers) -> None:
    """Add the ``benchmark`` and ``fit`` sub-commands."""
    bench = subparsers.add_parser(
        "benchmark",
        help="run the selection protocol of Lin et al. (2024) on a curves file",
        description=(
            "For each ratio r only sizes <= target/r are visible (plus the zero-shot loss); every "
            "method predicts each model's loss at the target; PearCorr is computed over all models, "
            "RelAcc for the model ranked first. CURVES is a tidy or wide-layout CSV/Parquet file, or "
            "a benchmark name (flan, gigaword, wmt19, lcdb_dev) read from $LENSLLM_NB_DATA or downloaded. "
            "A file with several datasets (without --dataset) runs the protocol on each, with its own "
            "target, and reports the mean per method over datasets x ratios; a ratio leaving fewer than "
            "3 visible sizes, or a method the data cannot serve, is skipped there and listed."
        ),
    )
    bench.add_argument("curves", metavar="CURVES")
    bench.add_argument("--methods", default=None,
                       help="comma-separated: zeroshot,subtuning,modelsize,vanilla,rectified,ats,lensllm,"
                            "robust_curvature,slope_drift,curvature_drift,backtested_pick,successive_halving,"
                            "progressive (default: all)")
    bench.add_argument("--target", type=int, default=None,
                       help="size to predict (default: the largest in the file, per dataset)")
    bench.add_argument("--ratios", default=None,
                       help="data-budget ratios (default: 8,16,32,64,128,256,512, those that leave at least "
                            "3 measured sizes visible, per dataset)")
    bench.add_argument("--dataset", default=None, help="dataset to use when the file holds several")
    bench.add_argument("--format", choices=("table", "json", "csv"), default="table")
    bench.add_argument("--level", type=float, default=None,
                       help="also record intervals and p_best at this level (JSON: \"predictions\")")
    bench.add_argument("--out", default=None, help="also write tables and plots into this folder")
    bench.add_argument("--drop-invalid", action="store_true",
                       help="drop invalid rows and too-short curves (they are listed on stderr) instead of refusing")
    bench.set_defaults(func=_benchmark)

    fit = subparsers.add_parser(
        "fit",
        help="fit a scaling law to every curve and predict a size",
        description="Per model: fitted parameters (non-identified ones shown as missing, with the reason), "
                    "RMSE of log loss, phase-transition size D*, and the prediction at N with its interval "
                    "from the prediction engine's default method.",
    )
    fit.add_argument("curves", metavar="CURVES")
    fit.add_argument("--law", choices=("lensllm", "rectified", "vanilla"), default="lensllm")
    fit.add_argument("--predict", type=int, default=None, metavar="N",
                     help="size to predict (default: largest size in the file)")
    fit.add_argument("--max-train", type=int, default=None, help="fit only sizes <= this")
    fit.add_argument("--level", type=float, default=0.9, help="prediction-interval level (default: 0.9)")
    fit.add_argument("--dataset", default=None)
    fit.add_argument("--format", choices=("table", "json"), default="table")
    fit.add_argument("--drop-invalid", action="store_true",
                     help="drop invalid rows and too-short curves (they are listed on stderr) instead of refusing")
    fit.set_defaults(func=_fit)


def _read(spec, dataset=None, *, drop_invalid=False):
    """A curves file, a benchmark name or a results store; one dataset when `dataset` is given.

    A store (notebook 01's SQLite file or a database URL) brings its runs' NTK features,
    which a curves file exported from it does not carry.
    """
    if _is_store(spec):
        table = load_curves(store=spec)
    else:
        table = load_curves(spec, drop_invalid=drop_invalid)
    if dataset is not None:
        if dataset not in set(table["dataset"]):
            raise ConfigError(f"`--dataset` {dataset!r} is not in {mask_url(spec)}; it has "
                              f"{sorted(map(str, table['dataset'].unique()))}.")
        table = table[table["dataset"] == dataset]
    return table


def _is_store(spec) -> bool:
    """A database URL, or an SQLite file (the header every SQLite database starts with)."""
    if is_url(spec):
        return True
    try:
        with Path(spec).open("rb") as handle:
            return handle.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


def _one_dataset(table, spec) -> str:
    """The dataset of `table`, or a `ConfigError` asking for ``--dataset``."""
    datasets = sorted(map(str, table["dataset"].unique()))
    if len(datasets) > 1:
        raise ConfigError(f"{mask_url(spec)} holds several datasets {datasets}; pass `--dataset` NAME to choose one.")
    return datasets[0]


def _int_list(text, name):
    """Comma-separated positive integers, duplicates removed (first occurrence kept)."""
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"`{name}` must be comma-separated integers, got {text!r}; e.g. 8,16,32.") from None
    return list(dict.fromkeys(values))


def _name_list(text):
    """Comma-separated names, stripped, lower-cased, duplicates removed."""
    return list(dict.fromkeys(m.strip().lower() for m in str(text).split(",") if m.strip()))


def _default_ratios(table, target) -> list:
    """The protocol's ratios that leave every candidate at least 3 measured sizes (all of them on FLAN)."""
    from ..analysis.protocol import DEFAULT_RATIOS, usable_ratios

    target = int(table["n_train"].max()) if target is None else target
    usable, _ = usable_ratios(table, DEFAULT_RATIOS, target)
    return usable or list(DEFAULT_RATIOS)  # none usable: run_benchmark says why


def _benchmark(args) -> int:
    from ..analysis.protocol import run_benchmark

    table = _read(args.curves, args.dataset, drop_invalid=args.drop_invalid)
    methods = None if args.methods is None else _name_list(args.methods)
    ratios = None if args.ratios is None else _int_list(args.ratios, "--ratios")
    if table["dataset"].nunique() > 1:
        return _benchmark_many(table, args, methods, ratios)
    dataset = _one_dataset(table, args.curves)
    ratios = _default_ratios(table, args.target) if ratios is None else ratios
    out = None if args.out is None else _prepare_out(args.out)
    result = run_benchmark(table, methods=methods, target=args.target, ratios=ratios, dataset=dataset,
                           level=args.level)
    _show_benchmark(result, args.format, _print_benchmark)
    if out is not None:
        _write_benchmark(result, out)
    return 0


def _show_benchmark(result, fmt, print_table) -> None:
    """A benchmark result on stdout: strict JSON, its results as CSV, or `print_table`'s text."""
    if fmt == "json":
        print(strict_json(result.to_json_dict(), indent=2))
    elif fmt == "csv":
        result.results.to_csv(sys.stdout, index=False)
    else:
        print_table(result)


def _benchmark_many(table, args, methods, ratios) -> int:
    """Several datasets: the protocol on each, then the mean per method over datasets x ratios."""
    from ..analysis.multi_benchmark import run_benchmarks
    from ..analysis.protocol import DEFAULT_RATIOS
    from ..utils.safe_output import open_inside

    out = None if args.out is None else _prepare_out(args.out)
    result = run_benchmarks(table, methods=methods, target=args.target, ratios=ratios or DEFAULT_RATIOS,
                            level=args.level)
    _show_benchmark(result, args.format, _print_many)
    if out is not None:
        # Through `open_inside`/`write_inside`, like every file under --out: a planted link is refused.
        for name, frame in (("results.csv", result.results), ("summary.csv", result.summary)):
            with open_inside(out, out / name) as handle:
                frame.to_csv(handle, index=False)
        write_inside(out, out / "results.json", strict_json(result.to_json_dict(), indent=2))
        print(f"wrote tables to {out}", file=sys.stderr)
    return 0


def _print_many(result) -> None:
    print(f"{len(result.per_dataset)} datasets, {result.wall_seconds:.2f} s; mean per method over datasets x ratios")
    print(result.summary.round(4).to_string(index=False))
    methods, ratios = {}, {}
    for res in result.per_dataset:
        for skip in res.skipped:
            methods.setdefault(skip["method"], []).append((res.dataset, skip["reason"]))
    for dataset, skips in result.skipped_ratios.items():
        for skip in skips:
            ratios.setdefault(skip["ratio"], []).append((dataset, skip["reason"]))
    # One line per skipped method or ratio, however many datasets: the JSON lists every one.
    count = len(result.skipped_ratios)
    labelled = [*methods.items(), *((f"ratio {r}", v) for r, v in sorted(ratios.items()))]
    for label, skips in labelled:
        first, reason = skips[0]
        where = first if len(skips) == 1 else f"{len(skips)} of {count} datasets (first {first}; all in --format json)"
        print(f"skipped {label} on {where}: {reason}")
    for skip in result.skipped_datasets:
        print(f"skipped dataset {skip['dataset']}: {skip['reason']}")


def _prepare_out(out) -> Path:
    """Create the output folder up front, so an unwritable one fails before any work."""
    out = Path(out).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = write_inside(out, ".lensllm-nb-write-test", "")  # never truncates a link planted there
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"`--out` {str(out)!r} is not a writable folder ({exc.strerror}); pick another folder.") from None
    return out.resolve()


def _print_benchmark(result) -> None:
    res = result.results
    print(f"dataset {result.dataset}, target {result.target}, {result.wall_seconds:.2f} s")
    for metric in ("pearson", "relacc"):
        table = res.pivot(index="method", columns="ratio", values=metric)
        table["mean"] = table.mean(axis=1)
        print(f"\n{metric} by ratio")
        print(table.round(3).to_string())
    cost = res.pivot(index="method", columns="ratio", values="cost_fraction")
    print("\ncost fraction by ratio")
    print(cost.round(4).to_string())
    for skip in result.skipped:
        print(f"skipped {skip['method']}: {skip['reason']}")


def _write_benchmark(result, out: Path) -> None:
    from ..analysis.published_curves import published
    from ..utils.provenance import run_record
    from ..workflow import plots

    from ..utils.safe_output import open_inside, path_inside, safe_filename

    # The dataset name comes from the data: it names files only once sanitized.
    stem = safe_filename(result.dataset, fallback="dataset")

    def inside(suffix):
        return path_inside(out, f"{stem}_{suffix}")

    # Every file through `open_inside`/`write_inside`: a link planted in --out is refused, not followed.
    for suffix, table in (("results.csv", result.results), ("predictions.csv", result.predictions)):
        with open_inside(out, inside(suffix)) as handle:
            table.to_csv(handle, index=False)
    write_inside(out, inside("results.json"), strict_json(result.to_json_dict(), indent=2))
    for metric in ("pearson", "relacc"):
        ax = plots.plot_benchmark_heatmap(result.results, metric=metric, published=published(result.dataset))
        plots.save_figure(ax, inside(f"{metric}_heatmap.png"))
    plots.save_figure(plots.plot_pareto(result.results), inside("pareto.png"))
    record = run_record("benchmark", {"dataset": result.dataset, "target": result.target},
                        wall_seconds=result.wall_seconds)
    write_inside(out, inside("record.json"), strict_json(record, indent=2))
    print(f"wrote tables and plots to {out}", file=sys.stderr)


def _fit(args) -> int:
    from ..analysis.curve_fits import fit_curves

    table = _read(args.curves, args.dataset, drop_invalid=args.drop_invalid)
    target = args.predict if args.predict is not None else int(table["n_train"].max())
    if target <= 0:
        raise ConfigError(f"`--predict` must be a positive size, got {target}.")
    if args.max_train is not None and args.max_train <= 0:
        raise ConfigError(f"`--max-train` must be a positive size, got {args.max_train}.")
    max_train = _fit_budget(table, args.max_train, args.predict)
    models = []
    # One fit per dataset: the same model has a different law (and prediction) on each.
    for dataset in sorted(map(str, table["dataset"].unique())):
        part = table[table["dataset"] == dataset]
        result = fit_curves(part, law=args.law, max_train=max_train)
        engine = _engine_predictions(part, target, max_train, args.level)
        models.extend(_fit_entry(row, result.laws.get(row["model"]), engine, target)
                      for row in result.summary.to_dict("records"))
    code = 0 if all(m["status"] == "ok" for m in models) else 1
    if args.format == "json":
        print(strict_json({"law": args.law, "max_train": max_train, "models": models}, indent=2))
    else:
        _print_fit(args.law, models, target, args.level, max_train)
    return code


def _fit_budget(table, max_train, predict):
    """The sizes the law sees: `--max-train`, else every size below `--predict` (the target held out)."""
    if max_train is not None or predict is None:
        return max_train
    below = table["n_train"][table["n_train"] < predict]
    if below.empty:
        raise ConfigError(f"`--predict` {predict} is not above any measured size, so nothing is left to fit; "
                          "predict a larger size or pass `--max-train`.")
    return int(below.max())


def _engine_predictions(table, target, max_train, level):
    """The prediction engine's default method at `target`, from the sizes the fit saw below it."""
    from ..analysis.predict import predict_candidates

    seen = table["n_train"][(table["n_train"] > 0) & (table["n_train"] < target)]
    if seen.empty:
        return None
    budget = int(seen.max()) if max_train is None else min(max_train, int(seen.max()))
    frame = predict_candidates(table, max_train=budget, target=target, level=level).frame.set_index("model")
    frame.attrs["max_train"] = budget
    return frame


def _fit_entry(row, law, engine, target) -> dict:
    """The JSON entry of one (dataset, model) fit; non-finite values become null."""
    params, missing = law.reported_params() if law else ({}, {})
    entry = {"model": row["model"], "dataset": row["dataset"], "params": params, "missing": missing,
             "rmse_log": float(row["rmse_log"]) if law else None,
             "d_star": params.get("d_star"), "status": row["status"], "reason": row["reason"]}
    if engine is not None and row["model"] in engine.index:
        p = engine.loc[row["model"]]
        entry["prediction"] = {"n": int(target), "method": DEFAULT_METHOD, "max_train": int(engine.attrs["max_train"]),
                               "loss": float(p["predicted"]),
                               "low": float(p["low"]), "high": float(p["high"]), "p_best": float(p["p_best"])}
    return entry


def _print_fit(law, models, target, level, max_train) -> None:
    import pandas as pd

    rows = []
    for m in models:
        # Non-identified parameters show as n/a; the JSON output says why.
        row = {"model": m["model"], "dataset": m["dataset"],
               **{k: ("n/a" if v is None else v) for k, v in m["params"].items()}, "rmse_log": m["rmse_log"]}
        if m["status"] != "ok":
            row["status"] = f"failed: {m['reason']}"
        if "prediction" in m:
            p = m["prediction"]
            seen = p["max_train"]
            row.update({f"engine loss@{target}": p["loss"], f"engine low{int(level * 100)}": p["low"],
                        f"engine high{int(level * 100)}": p["high"]})
        rows.append(row)
    sizes = "every size" if max_train is None else f"sizes <= {max_train:,}"
    print(f"law fit: {law} on {sizes} (parameters, rmse_log)")
    if any("prediction" in m for m in models):
        print(f"engine: {DEFAULT_METHOD} on sizes <= {seen:,}, predicting {target:,} (the 'engine' columns)")
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
