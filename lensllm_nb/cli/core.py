"""``lensllm-nb benchmark`` and ``lensllm-nb fit``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import ConfigError
from ..safe_output import strict_json
from ..select import DEFAULT_METHOD

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
            "a benchmark name (flan, gigaword, wmt19) read from $LENSLLM_NB_DATA or downloaded."
        ),
    )
    bench.add_argument("curves", metavar="CURVES")
    bench.add_argument("--methods", default=None,
                       help="comma-separated: zeroshot,subtuning,modelsize,vanilla,rectified,ats,lensllm,"
                            "robust_curvature,slope_drift,curvature_drift,progressive (default: all)")
    bench.add_argument("--target", type=int, default=None, help="size to predict (default: largest in file)")
    bench.add_argument("--ratios", default="8,16,32,64,128,256,512", help="data-budget ratios (default: %(default)s)")
    bench.add_argument("--dataset", default=None, help="dataset to use when the file holds several")
    bench.add_argument("--format", choices=("table", "json", "csv"), default="table")
    bench.add_argument("--level", type=float, default=None,
                       help="also record intervals and p_best at this level (JSON: \"predictions\")")
    bench.add_argument("--out", default=None, help="also write tables and plots into this folder")
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
    fit.set_defaults(func=_fit)


def _read(spec, dataset=None):
    """A file path, or the name of a benchmark set."""
    from ..benchmarks import SHA256, load
    from ..curves import read_curves

    path = Path(spec)
    if not path.exists() and spec.lower() in SHA256:
        return load(spec)
    table = read_curves(path)
    if dataset is not None:
        if dataset not in set(table["dataset"]):
            raise ConfigError(f"`--dataset` {dataset!r} is not in {spec}; it has {sorted(table['dataset'].unique())}.")
        table = table[table["dataset"] == dataset]
    return table


def _int_list(text, name):
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"`{name}` must be comma-separated integers, got {text!r}; e.g. 8,16,32.") from None
    return values


def _benchmark(args) -> int:
    from ..protocol import run_benchmark

    table = _read(args.curves, args.dataset)
    methods = None if args.methods is None else [m for m in args.methods.split(",") if m.strip()]
    result = run_benchmark(table, methods=methods, target=args.target, ratios=_int_list(args.ratios, "--ratios"),
                           level=args.level)
    if args.format == "json":
        print(strict_json(result.to_json_dict(), indent=2))
    elif args.format == "csv":
        result.results.to_csv(sys.stdout, index=False)
    else:
        _print_benchmark(result)
    if args.out:
        _write_benchmark(result, Path(args.out))
    return 0


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


def _write_benchmark(result, out: Path) -> None:
    from .. import plots
    from ..benchmarks import published
    from ..provenance import run_record

    out.mkdir(parents=True, exist_ok=True)
    stem = result.dataset
    result.results.to_csv(out / f"{stem}_results.csv", index=False)
    result.predictions.to_csv(out / f"{stem}_predictions.csv", index=False)
    (out / f"{stem}_results.json").write_text(strict_json(result.to_json_dict(), indent=2))
    for metric in ("pearson", "relacc"):
        ax = plots.plot_benchmark_heatmap(result.results, metric=metric, published=published(stem))
        plots.save_figure(ax, out / f"{stem}_{metric}_heatmap.png")
    plots.save_figure(plots.plot_pareto(result.results), out / f"{stem}_pareto.png")
    record = run_record("benchmark", {"dataset": stem, "target": result.target}, wall_seconds=result.wall_seconds)
    (out / f"{stem}_record.json").write_text(json.dumps(record, indent=2, default=str))
    print(f"wrote tables and plots to {out}", file=sys.stderr)


def _fit(args) -> int:
    from ..fitting import fit_curves
    from ..predict import predict_candidates

    table = _read(args.curves, args.dataset)
    target = args.predict if args.predict is not None else int(table["n_train"].max())
    if target <= 0:
        raise ConfigError(f"`--predict` must be a positive size, got {target}.")
    result = fit_curves(table, law=args.law, max_train=args.max_train)
    # The prediction at N comes from the prediction engine (the default method),
    # from the sizes the fit saw that lie below N.
    seen = table["n_train"][table["n_train"] < target]
    budget = int(seen.max()) if args.max_train is None else min(args.max_train, int(seen.max()))
    engine = predict_candidates(table, max_train=budget, target=target, level=args.level).frame.set_index("model")
    models = []
    for row in result.summary.to_dict("records"):
        law = result.laws.get(row["model"])
        params, missing = law.reported_params() if law else ({}, {})
        entry = {"model": row["model"], "params": params, "missing": missing,
                 "rmse_log": float(row["rmse_log"]) if law else None,
                 "d_star": params.get("d_star"), "status": row["status"], "reason": row["reason"]}
        if row["model"] in engine.index:
            p = engine.loc[row["model"]]
            entry["prediction"] = {"n": int(target), "method": DEFAULT_METHOD, "loss": float(p["predicted"]),
                                   "low": float(p["low"]), "high": float(p["high"]), "p_best": float(p["p_best"])}
        models.append(entry)
    if args.format == "json":
        print(strict_json({"law": args.law, "models": models}, indent=2))
        return 0 if all(m["status"] == "ok" for m in models) else 1
    _print_fit(args.law, models, target, args.level)
    return 0 if all(m["status"] == "ok" for m in models) else 1


def _print_fit(law, models, target, level) -> None:
    import pandas as pd

    rows = []
    for m in models:
        # Non-identified parameters show as n/a; the JSON output says why.
        row = {"model": m["model"], **{k: ("n/a" if v is None else v) for k, v in m["params"].items()},
               "rmse_log": m["rmse_log"]}
        if m["status"] != "ok":
            row["status"] = f"failed: {m['reason']}"
        if "prediction" in m:
            p = m["prediction"]
            row.update({f"loss@{target}": p["loss"], f"low{int(level * 100)}": p["low"],
                        f"high{int(level * 100)}": p["high"]})
        rows.append(row)
    print(f"law {law} (parameters); predictions at {target}: method {DEFAULT_METHOD}")
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
