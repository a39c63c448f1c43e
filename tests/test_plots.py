"""Tests of lensllm_nb.workflow.plots on the real FLAN curves and the package's own fits."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.collections import PolyCollection, QuadMesh  # noqa: E402

from lensllm_nb.analysis.curve_fits import fit_curves  # noqa: E402
from lensllm_nb.analysis.curves import read_curves  # noqa: E402
from lensllm_nb.analysis.metrics import pearcorr  # noqa: E402
from lensllm_nb.errors import ConfigError  # noqa: E402
from lensllm_nb.workflow import plots  # noqa: E402

DATA = Path(os.environ.get("LENSLLM_NB_DATA", Path(__file__).resolve().parents[2] / "shared" / "benchmarks"))
TARGET = 1_638_400
MAX_TRAIN = TARGET // 64
FOUR = ["MBZUAI/LaMini-GPT-124M", "facebook/opt-350m", "google/mt5-base", "gpt2"]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def flan():
    return read_curves(DATA / "flan.csv")


@pytest.fixture(scope="module")
def fits(flan):
    return fit_curves(flan, "lensllm", max_train=MAX_TRAIN, models=FOUR)


@pytest.fixture
def results():
    """A hand-made run_benchmark results table with known values."""
    rows = []
    for i, method in enumerate(["zeroshot", "ats", "lensllm"]):
        for j, ratio in enumerate([8, 64, 512]):
            rows.append({
                "dataset": "flan", "method": method, "ratio": ratio, "max_train": TARGET // ratio,
                "pearson": round(0.1 * i + 0.05 * j - 0.1, 3), "relacc": round(0.3 * i + 0.01 * j, 3),
                "spearman": 0.5, "cost_fraction": 0.0 if method == "zeroshot" else 2.0 / ratio,
                "chosen": "gpt2",
            })
    return pd.DataFrame(rows)


@pytest.fixture
def predictions():
    rng = np.random.default_rng(0)
    true = rng.uniform(1.5, 3.0, 30)
    frames = [
        pd.DataFrame({"dataset": "flan", "method": m, "ratio": 8, "model": [f"m{i}" for i in range(30)],
                      "predicted": true + rng.normal(0, s, 30), "true": true})
        for m, s in (("ats", 0.3), ("lensllm", 0.1))
    ]
    return pd.concat(frames, ignore_index=True)


def _law_lines(ax):
    return [ln for ln in ax.lines if len(ln.get_xdata()) == plots.curves._GRID_POINTS]


def _zero_shot(ax):
    return [a for a in ax.get_children() if a.get_gid() == "zero-shot"]


# ----------------------------------------------------------------------- curves


def test_plot_curves_draws_points_laws_bands_and_zero_shot(flan, fits):
    ax = plots.plot_curves(flan, fits, models=FOUR, max_train=MAX_TRAIN, target=TARGET)
    assert isinstance(ax, Axes)
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert ax.get_xlabel() == "training examples (log)"
    assert ax.get_ylabel() == "test loss (log)"
    assert "flan" in ax.get_title()
    lines = _law_lines(ax)
    assert len(lines) == 4
    for line in lines:
        assert line.get_xdata()[0] == 200 and line.get_xdata()[-1] == pytest.approx(TARGET)
    assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 4  # bands
    # one filled and one hollow scatter per model, points per model = positive sizes
    scatters = [c for c in ax.collections if not isinstance(c, PolyCollection)]
    assert len(scatters) == 8
    hollow = [c for c in scatters if c.get_facecolors().size == 0 or c.get_facecolors()[0][3] == 0]
    n_held = ((flan["model"].isin(FOUR)) & (flan["n_train"] > MAX_TRAIN)).sum()
    assert sum(len(c.get_offsets()) for c in hollow) == n_held
    assert sum(len(c.get_offsets()) for c in scatters) == ((flan["model"].isin(FOUR)) & (flan["n_train"] > 0)).sum()
    # zero-shot losses cannot sit on a log axis: one marker per model, none at x=0 in data
    assert len(_zero_shot(ax)) == 4
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert [label.split(" (")[0] for label in legend[:4]] == FOUR
    assert legend[2] == "google/mt5-base (zero-shot 12.9 off range)"
    assert "zero-shot (n=0, on left axis)" in legend and "held out" in legend


def test_plot_curves_marks_d_star_inside_the_range(flan, fits):
    ax = plots.plot_curves(flan, fits, models=FOUR, target=TARGET)
    inside = [m for m in FOUR if 200 <= (fits.laws[m].d_star_ or 0) <= TARGET]
    diamonds = [ln for ln in ax.lines if ln.get_marker() == "D" and len(ln.get_xdata()) == 1]
    assert sorted(d.get_xdata()[0] for d in diamonds) == pytest.approx(sorted(fits.laws[m].d_star_ for m in inside))


def test_plot_curves_without_fits_or_zero_shot(flan):
    table = flan[flan["n_train"] > 0]
    ax = plots.plot_curves(table, models="gpt2")
    assert _law_lines(ax) == [] and _zero_shot(ax) == []
    assert len(ax.collections) == 1  # all points visible, filled
    assert "zero-shot" not in " ".join(t.get_text() for t in ax.get_legend().get_texts())


def test_plot_curves_pins_far_zero_shot_to_the_edge(flan):
    ax = plots.plot_curves(flan, models=["google/mt5-base"])  # zero-shot ~12.9, curve 1.6-3.2
    (marker,) = _zero_shot(ax)
    assert marker.get_marker() == "^"
    assert ax.get_legend().get_texts()[0].get_text() == "google/mt5-base (zero-shot 12.9 off range)"
    assert ax.get_ylim()[1] < 5


def test_plot_curves_phase_markers_and_dict_fits(flan, fits):
    laws = {m: fits.laws[m] for m in FOUR[:3]}  # gpt2 has no law: drawn as points only
    ax = plots.plot_curves(flan, laws, models=FOUR, phase=True, interval=None)
    markers = {tuple(map(tuple, c.get_paths()[0].vertices[:4])) for c in ax.collections}
    assert len(markers) == 2  # circles (power) and squares (pre-power)
    assert not any(isinstance(c, PolyCollection) for c in ax.collections)
    assert len(_law_lines(ax)) == 3
    assert "gpt2 (no fit)" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_plot_curves_grid_one_panel_per_model(flan, fits):
    grid = plots.plot_curves_grid(flan, fits, models=FOUR, max_train=MAX_TRAIN, target=TARGET, col_wrap=2)
    assert isinstance(grid, sns.FacetGrid)
    titles = [ax.get_title() for ax in grid.axes.flat]
    assert titles == [m if m != "google/mt5-base" else f"{m} (zero-shot 12.9 off range)" for m in FOUR]
    for ax in grid.axes.flat:
        assert len(_law_lines(ax)) == 1 and len(_zero_shot(ax)) == 1
        assert ax.get_xscale() == "log"


def _band_reach(ax):
    """The largest x of each prediction band drawn on ``ax``."""
    return [c.get_paths()[0].vertices[:, 0].max() for c in ax.collections if isinstance(c, PolyCollection)]


def test_overlay_bands_stop_at_the_fitted_sizes_and_each_panel_draws_its_band_to_the_target(flan, fits):
    """Extrapolated bands of several laws would cover each other and the curves in one axes."""
    ax = plots.plot_curves(flan, fits, models=FOUR, max_train=MAX_TRAIN, target=TARGET)
    reach = _band_reach(ax)
    assert len(reach) == 4 and max(reach) <= MAX_TRAIN * (1 + 1e-6) and min(reach) > MAX_TRAIN / 1.1
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "90% prediction interval (fitted sizes)" in labels
    grid = plots.plot_curves_grid(flan, fits, models=FOUR, max_train=MAX_TRAIN, target=TARGET)
    for panel in grid.axes.flat:
        assert _band_reach(panel) == [pytest.approx(TARGET)]


def test_plot_curves_grid_names_models_without_a_fit(flan, fits):
    laws = {m: fits.laws[m] for m in FOUR[:2]}
    grid = plots.plot_curves_grid(flan, laws, models=FOUR[:3], interval=None)
    assert [ax.get_title() for ax in grid.axes.flat] == FOUR[:2] + [f"{FOUR[2]} (no fit, zero-shot 12.9 off range)"]
    assert [len(_law_lines(ax)) for ax in grid.axes.flat] == [1, 1, 0]


def test_curve_plots_do_not_modify_inputs(flan, fits):
    table = flan.copy()
    params = {m: dict(law.params_) for m, law in fits.laws.items()}
    summary = fits.summary.copy()
    plots.plot_curves(table, fits, models=FOUR, max_train=MAX_TRAIN, phase=True)
    plots.plot_curves_grid(table, fits, models=FOUR)
    pd.testing.assert_frame_equal(table, flan)
    pd.testing.assert_frame_equal(fits.summary, summary)
    assert {m: law.params_ for m, law in fits.laws.items()} == params


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"models": ["no/such-model"]}, "`models`"),
        ({"max_train": -1}, "`max_train`"),
        ({"target": 0}, "`target`"),
        ({"interval": 1.5}, "`interval`"),
        ({"fits": [1, 2]}, "`fits`"),
        ({"phase": True}, "`phase=True` needs `fits`"),
        ({"palette": ["red"], "models": FOUR}, "`palette`"),
        ({"palette": "no-such-palette"}, "`palette`"),
        ({"ax": "axes"}, "`ax`"),
    ],
)
def test_plot_curves_rejects_bad_arguments(flan, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        plots.plot_curves(flan, **kwargs)


def test_plot_curves_rejects_bad_tables(flan):
    with pytest.raises(ConfigError, match="`table` lacks column"):
        plots.plot_curves(flan.drop(columns="test_loss"))
    with pytest.raises(ConfigError, match="several datasets"):
        plots.plot_curves(pd.concat([flan, flan.assign(dataset="other")]))
    with pytest.raises(ConfigError, match="only zero-shot"):
        plots.plot_curves(flan[flan["n_train"] == 0])
    with pytest.raises(ConfigError, match="only zero-shot.*gpt2"):
        plots.plot_curves(flan[(flan["n_train"] == 0) | (flan["model"] != "gpt2")])
    with pytest.raises(ConfigError, match="`col_wrap`"):
        plots.plot_curves_grid(flan, col_wrap=0)


# --------------------------------------------------------------- predicted/true


def test_predicted_vs_true_title_legend_and_diagonal(predictions):
    before = predictions.copy()
    ax = plots.plot_predicted_vs_true(predictions)
    pd.testing.assert_frame_equal(predictions, before)
    r_all = pearcorr(predictions["predicted"], predictions["true"])
    assert f"r={r_all:.3f}" in ax.get_title()
    assert len(ax.collections) == 2
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    for method in ("ats", "lensllm"):
        sub = predictions[predictions["method"] == method]
        assert f"{method} (r={pearcorr(sub['predicted'], sub['true']):.3f})" in texts
    (diag,) = [ln for ln in ax.lines if ln.get_label() == "y = x"]
    x, y = diag.get_data()
    assert np.allclose(x, y)
    assert "ratio 8" in ax.get_title()


def test_predicted_vs_true_without_hue_column(predictions):
    ax = plots.plot_predicted_vs_true(predictions.drop(columns="method"), hue=None)
    assert len(ax.collections) == 1
    ax = plots.plot_predicted_vs_true(predictions.drop(columns="method"))  # default hue absent
    assert len(ax.collections) == 1


def test_predicted_vs_true_keeps_a_runaway_prediction_from_squashing_the_rest(predictions):
    runaway = predictions.copy()
    true = runaway["true"]
    runaway.loc[runaway.index[0], "predicted"] = true.max() + 20 * (true.max() - true.min())
    ax = plots.plot_predicted_vs_true(runaway)
    low, high = ax.get_xlim()
    assert high < true.max() + 1.2 * (true.max() - true.min())  # one true-loss range beyond, plus padding
    assert ax.get_ylim() == (low, high) and low <= true.min()
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "1 predicted beyond the axes (drawn at the edge)" in texts
    # Pearson r stays that of the real values.
    assert f"r={pearcorr(runaway['predicted'], runaway['true']):.3f}" in ax.get_title()
    edge = ax.collections[-1].get_offsets()
    assert edge.shape == (1, 2) and edge[0, 0] <= high


def test_predicted_vs_true_rejects_bad_input(predictions):
    with pytest.raises(ConfigError, match="`hue`"):
        plots.plot_predicted_vs_true(predictions, hue="family")
    with pytest.raises(ConfigError, match="`predictions` lacks column"):
        plots.plot_predicted_vs_true(predictions.drop(columns="true"))
    bad = predictions.copy()
    bad.loc[3, "predicted"] = np.nan
    with pytest.raises(ConfigError, match="non-finite"):
        plots.plot_predicted_vs_true(bad)


# ---------------------------------------------------------------------- heatmap


def test_heatmap_cells_equal_results(results):
    before = results.copy()
    ax = plots.plot_benchmark_heatmap(results, "relacc")
    pd.testing.assert_frame_equal(results, before)
    (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
    expected = results.pivot(index="method", columns="ratio", values="relacc").loc[["zeroshot", "ats", "lensllm"]]
    assert np.allclose(np.asarray(mesh.get_array()).reshape(expected.shape), expected.to_numpy())
    assert [t.get_text() for t in ax.get_yticklabels()] == ["zeroshot", "ats", "lensllm"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["8", "64", "512"]
    annotations = [t.get_text() for t in ax.texts]
    assert annotations == [f"{v:.3f}" for v in expected.to_numpy().ravel()]
    assert "RelAcc" in ax.get_title()


def test_heatmap_with_published_rows():
    published = pd.read_csv(DATA / "published_selection.csv")
    rows = [{"dataset": "flan", "method": "ats", "ratio": r, "pearson": 0.5, "relacc": 0.5, "spearman": 0.5,
             "cost_fraction": 2 / r} for r in (8, 16, 32, 64, 128, 256, 512)]
    ax = plots.plot_benchmark_heatmap(pd.DataFrame(rows), published=DATA / "published_selection.csv")
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[0] == "ats" and "AtS (paper)" in labels
    (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
    cells = np.ma.filled(np.asarray(mesh.get_array(), dtype=float), np.nan).reshape(len(labels), 7)
    paper = published.query("dataset == 'FLAN' and method == 'AtS' and metric == 'PearCorr'").sort_values("ratio")
    assert np.allclose(cells[labels.index("AtS (paper)")], paper["value"])
    # published methods reported at one ratio only leave the other cells marked n/a
    assert any(t.get_text() == "n/a" for t in ax.texts)
    # benchmarks.published() returns an empty frame when the file is absent
    empty = pd.DataFrame(columns=published.columns)
    ax = plots.plot_benchmark_heatmap(pd.DataFrame(rows), published=empty)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["ats"]


def test_heatmap_facets_per_dataset(results):
    both = pd.concat([results, results.assign(dataset="gigaword")], ignore_index=True)
    grid = plots.plot_benchmark_heatmap_grid(both)
    assert isinstance(grid, sns.FacetGrid)
    assert [ax.get_title() for ax in grid.axes.flat] == ["PearCorr: flan", "PearCorr: gigaword"]
    with pytest.raises(ConfigError, match="`ax` was given"):
        plots.plot_benchmark_heatmap(both, ax=plt.subplots()[1])


def test_axes_level_plots_draw_one_dataset_and_grids_are_grids_for_one(results):
    both = pd.concat([results, results.assign(dataset="gigaword")], ignore_index=True)
    for axes_level, grid_level in ((plots.plot_benchmark_heatmap, plots.plot_benchmark_heatmap_grid),
                                   (plots.plot_pareto, plots.plot_pareto_grid)):
        with pytest.raises(ConfigError, match=f"2 datasets .*{grid_level.__name__}"):
            axes_level(both)
        grid = grid_level(results)
        assert isinstance(grid, sns.FacetGrid) and len(grid.axes.flat) == 1
    cov = pd.DataFrame({"dataset": ["flan", "flan", "giga", "giga"], "level": 0.8, "ratio": [8, 64, 8, 64],
                        "coverage": [0.7, 0.8, 0.6, 0.9]})
    with pytest.raises(ConfigError, match="plot_coverage_grid"):
        plots.plot_coverage(cov)
    grid = plots.plot_coverage_grid(cov[cov["dataset"] == "flan"])
    assert isinstance(grid, sns.FacetGrid)
    (panel,) = grid.axes.flat
    assert [list(ln.get_ydata()) for ln in panel.lines if ln.get_marker() == "o"] == [[0.7, 0.8]]


def test_heatmap_rejects_bad_input(results):
    with pytest.raises(ConfigError, match="`metric`"):
        plots.plot_benchmark_heatmap(results, "accuracy")
    with pytest.raises(ConfigError, match="`results` lacks column"):
        plots.plot_benchmark_heatmap(results.drop(columns="ratio"))
    with pytest.raises(ConfigError, match="several rows"):
        plots.plot_benchmark_heatmap(pd.concat([results, results.iloc[:1]]))
    with pytest.raises(ConfigError, match="`published`"):
        plots.plot_benchmark_heatmap(results, published=pd.DataFrame({"dataset": ["flan"]}))


# ----------------------------------------------------------------------- pareto


def test_pareto_front_and_zero_cost(results):
    before = results.copy()
    ax = plots.plot_pareto(results)
    pd.testing.assert_frame_equal(results, before)
    assert ax.get_xscale() == "symlog"  # zero-shot costs nothing
    (front,) = [ln for ln in ax.lines if ln.get_label() == "Pareto front"]
    method_lines = [ln for ln in ax.lines if ln.get_label() in {"zeroshot", "ats", "lensllm"}]
    assert len(method_lines) == 3
    # by hand: cheapest best is zeroshot at ratio 512 (0.0); lensllm beats it at every cost
    expected = results.assign(c=results["cost_fraction"]).sort_values(["c", "pearson"], ascending=[True, False])
    best, keep = -np.inf, []
    for _, row in expected.iterrows():
        if row["pearson"] > best:
            keep.append((row["c"], row["pearson"]))
            best = row["pearson"]
    ringed = [c for c in ax.collections if c.get_offsets().shape[0] == len(keep)]
    assert ringed and np.allclose(ringed[-1].get_offsets(), keep)
    assert front.get_drawstyle() == "steps-post"
    assert "PearCorr" in ax.get_ylabel()


def test_pareto_log_axis_without_zero_cost(results):
    ax = plots.plot_pareto(results[results["method"] != "zeroshot"], metric="relacc")
    assert ax.get_xscale() == "log"
    assert "RelAcc" in ax.get_title()


def test_pareto_rejects_bad_input(results):
    with pytest.raises(ConfigError, match="`metric`"):
        plots.plot_pareto(results, metric="loss")
    bad = results.copy()
    bad.loc[0, "pearson"] = np.nan
    with pytest.raises(ConfigError, match="non-finite"):
        plots.plot_pareto(bad)
    bad = results.copy()
    bad.loc[1, "cost_fraction"] = -0.1
    with pytest.raises(ConfigError, match="cost_fraction"):
        plots.plot_pareto(bad)


# ---------------------------------------------------------------- real pipeline


def test_plots_from_a_real_benchmark_run(flan):
    from lensllm_nb.analysis.protocol import run_benchmark

    bench = run_benchmark(flan, methods=["zeroshot", "subtuning", "ats", "lensllm"], ratios=(8, 64, 512))
    ax = plots.plot_benchmark_heatmap(bench.results)
    (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
    expected = bench.results.pivot(index="method", columns="ratio", values="pearson")
    expected = expected.loc[list(pd.unique(bench.results["method"]))]
    assert np.allclose(np.asarray(mesh.get_array()).reshape(expected.shape), expected.to_numpy())
    assert isinstance(plots.plot_pareto(bench.results), Axes)
    preds = bench.predictions[bench.predictions["ratio"] == 8]
    ax = plots.plot_predicted_vs_true(preds[preds["method"].isin(["ats", "lensllm"])])
    ats = bench.results.query("method == 'ats' and ratio == 8")["pearson"].iloc[0]
    assert f"ats (r={ats:.3f})" in [t.get_text() for t in ax.get_legend().get_texts()]


# ------------------------------------------------------------------------ saving


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_save_figure_writes_and_closes(tmp_path, flan, suffix):
    ax = plots.plot_curves(flan, models=FOUR)
    number = ax.figure.number
    path = plots.save_figure(ax, tmp_path / "sub" / f"curves{suffix}")
    assert path.exists() and path.stat().st_size > 1000
    assert not plt.fignum_exists(number)


def test_save_figure_accepts_facetgrid_and_rejects_bad_paths(tmp_path, flan):
    grid = plots.plot_curves_grid(flan, models=FOUR[:2])
    assert plots.save_figure(grid, tmp_path / "grid.png").exists()
    with pytest.raises(ConfigError, match="`path`"):
        plots.save_figure(plt.figure(), tmp_path / "x.jpg")
    with pytest.raises(ConfigError, match="`fig_or_ax`"):
        plots.save_figure("figure", tmp_path / "x.png")


def test_importing_the_package_does_not_import_matplotlib():
    code = "import sys, lensllm_nb; assert 'matplotlib' not in sys.modules and 'seaborn' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------ engine predictions


@pytest.fixture(scope="module")
def prediction(flan):
    from lensllm_nb.analysis.predict import predict_candidates

    return predict_candidates(flan, max_train=MAX_TRAIN, target=TARGET)


def test_plot_predictions_draws_curves_bars_and_the_key(flan, prediction):
    ax, strip = plots.plot_predictions(flan, prediction, highlight=5)
    assert ax.get_xscale() == ax.get_yscale() == "log"
    # one collection for 30 curves, two scatters (visible, held out); one for 30 bars, one for the centres
    assert len(ax.collections) == 3 and len(strip.collections) == 3
    bars = strip.collections[0].get_segments()
    assert len(bars) == 30
    np.testing.assert_allclose([b[0][1] for b in bars], prediction.frame["low"])
    np.testing.assert_allclose([b[1][1] for b in bars], prediction.frame["high"])
    labels = [t.get_text() for t in strip.get_legend().get_texts()]
    assert labels[0].startswith(f"1. {prediction.chosen}") and "p_best" in labels[0]
    assert "25 other candidates" in labels and not any("overlay" in label for label in labels)
    assert "robust" in ax.figure.get_suptitle() or prediction.method in ax.figure.get_suptitle()


def test_plot_predictions_overlay_is_named_and_axes_are_reused(flan, prediction):
    fit = fit_curves(flan, "rectified", max_train=MAX_TRAIN)
    ax, strip = plots.plot_predictions(flan, prediction, fits=fit, overlay_name="rectified law fit")
    assert any("rectified law fit (overlay" in t.get_text() for t in strip.get_legend().get_texts())
    dashed = ax.collections[-1]
    assert len(dashed.get_segments()) == 8  # the highlighted candidates only
    again = plots.plot_predictions(flan, prediction, axes=(ax, strip))
    assert again == (ax, strip) and len(ax.collections) == 3  # the overlay is gone, nothing piles up


def test_plot_ranking_bars_and_p_best(prediction):
    from lensllm_nb.workflow.tables import ranking_table

    truth = pd.Series(1.5, index=prediction.frame["model"])
    ax = plots.plot_ranking(ranking_table(prediction, truth), top=10)
    labels = {t.get_position()[1]: t.get_text() for t in ax.get_yticklabels()}
    assert labels[9] == prediction.chosen and labels[0] == prediction.frame["model"].iloc[9]  # best on top
    assert len([t for t in ax.texts if t.get_text().startswith("p_best")]) == 10
    with pytest.raises(ConfigError, match="`ranking`"):
        plots.plot_ranking(pd.DataFrame({"model": ["a"]}))


def test_plot_coverage_and_reliability():
    cov = pd.DataFrame({"dataset": "flan", "level": [0.8, 0.8, 0.8, 0.9, 0.9, 0.9],
                        "ratio": [8, 64, "all", 8, 64, "all"], "coverage": [0.7, 0.8, 0.75, 0.85, 0.9, 0.875]})
    ax = plots.plot_coverage(cov)
    assert [list(ln.get_ydata()) for ln in ax.lines if ln.get_marker() == "o"] == [[0.7, 0.8], [0.85, 0.9]]
    assert any("pooled 88%" in t.get_text() for t in ax.get_legend().get_texts())
    rel = pd.DataFrame({"dataset": "flan", "mean_p_best": [0.1, 0.6], "observed": [0.05, 0.7], "n": [50, 4]})
    ax = plots.plot_reliability(rel)
    assert list(ax.lines[1].get_xdata()) == [0.1, 0.6]
    # The bins' sizes are the markers' areas (text labels of n collided), the largest named.
    sizes = ax.collections[0].get_sizes()
    assert sizes[0] == pytest.approx(200.0) and sizes[1] == pytest.approx(12 + 188 * np.sqrt(4 / 50))
    assert "largest 50" in ax.get_xlabel() and not ax.texts


def test_user_strings_reach_plots_as_literal_text(flan):
    """A model or dataset name with $...$ must not switch matplotlib into mathtext."""
    table = flan[flan["model"].isin(FOUR)].replace({"gpt2": "$\\alpha$ <img src=x>", "flan": "$set$"})
    ax = plots.plot_curves(table, models=["$\\alpha$ <img src=x>"])
    assert r"\$set\$" in ax.get_title()
    assert r"\$\alpha\$ <img src=x>" in [t.get_text() for t in ax.get_legend().get_texts()]
    ax.figure.canvas.draw()  # renders without a mathtext error


def test_coverage_from_fewer_than_30_points_says_it_is_too_few():
    def cov(n):
        return pd.DataFrame({"dataset": "own", "level": 0.9, "ratio": [16, "all"], "coverage": [0.75, 0.75],
                             "n": [n, n]})

    assert plots.plot_coverage(cov(8)).get_title().endswith("only 8 points: too few to judge")
    assert "too few" not in plots.plot_coverage(cov(30)).get_title()


def test_one_colour_per_candidate_in_every_figure(flan):
    """The law-fit overlay, the prediction figure and the answer's figure agree on each model's colour."""
    from lensllm_nb.analysis.predict import predict_candidates
    from lensllm_nb.workflow.recommendation import answer_selection
    from own_models import legend_colours

    table = flan[flan["model"].isin(FOUR)]
    palette = {m: tuple(round(c, 4) for c in rgb) for m, rgb in plots.model_palette(FOUR).items()}
    assert plots.model_palette(FOUR) == plots.model_palette(list(reversed(FOUR)) * 2)  # order, repeats: no matter
    subset = legend_colours(plots.plot_curves(table, models=FOUR[1:]).figure)  # a subset keeps the set's colours
    pred = predict_candidates(table, max_train=25600, target=1638400)
    figures = [plots.plot_predictions(table, pred)[0].figure,
               answer_selection(table, max_train=25600, target=1638400).figure()]
    assert {m: subset[m] for m in FOUR[1:]} == {m: palette[m] for m in FOUR[1:]}
    for figure in figures:
        shown = legend_colours(figure)
        assert {m: shown[m] for m in FOUR} == palette
