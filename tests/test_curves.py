import numpy as np
import pandas as pd
import pytest

from lensllm_nb.analysis.curves import (aggregate_seeds, curve_arrays, read_curves, read_wide, to_wide,
    validate_curves)
from lensllm_nb.errors import CurveDataError


def _tidy(**overrides):
    rows = []
    for model in ("a", "b"):
        for n, loss in ((0, 4.0), (100, 3.0), (200, 2.5), (400, 2.0)):
            for seed in (0, 1):
                rows.append({"model": model, "dataset": "toy", "n_train": n, "seed": seed,
                             "test_loss": loss + 0.01 * seed})
    frame = pd.DataFrame(rows)
    for key, value in overrides.items():
        frame[key] = value
    return frame


def test_wide_benchmark_reads_to_tidy(data_dir):
    table = read_curves(data_dir / "flan.csv")
    assert list(table.columns[:5]) == ["model", "dataset", "n_train", "seed", "test_loss"]
    assert table["model"].nunique() == 30
    assert table["n_train"].nunique() == 15 and table["n_train"].min() == 0
    assert {"params", "family"} <= set(table.columns)
    gpt2 = table[(table["model"] == "gpt2") & (table["n_train"] == 1638400)]
    assert gpt2["test_loss"].iloc[0] == pytest.approx(1.791, abs=1e-3)
    assert table.equals(read_wide(data_dir / "flan.csv"))


def test_tidy_csv_and_parquet_round_trip(tmp_path):
    frame = _tidy()
    frame.to_csv(tmp_path / "c.csv", index=False)
    frame.to_parquet(tmp_path / "c.parquet")
    a, b = read_curves(tmp_path / "c.csv"), read_curves(tmp_path / "c.parquet")
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == len(frame)


def test_seed_aggregation():
    agg = aggregate_seeds(_tidy())
    row = agg[(agg["model"] == "a") & (agg["n_train"] == 100)].iloc[0]
    assert row["test_loss"] == pytest.approx(3.005)
    assert row["test_loss_std"] == pytest.approx(np.std([3.0, 3.01], ddof=1))
    assert row["n_seeds"] == 2
    d, l = curve_arrays(_tidy(), "a")
    assert d.tolist() == [100, 200, 400] and l[0] == pytest.approx(3.005)
    assert to_wide(_tidy()).shape == (2, 4)


def test_validation_does_not_mutate_input():
    frame = _tidy()
    before = frame.copy()
    validate_curves(frame)
    pd.testing.assert_frame_equal(frame, before)


def _first(column, value):
    """Return a change that sets the first row's `column` to `value`."""
    def change(frame):
        frame = frame.astype({column: object})
        frame.loc[0, column] = value
        return frame
    return change


@pytest.mark.parametrize("change, column, words", [
    (_first("test_loss", "x"), "test_loss", "not a number"),
    (_first("test_loss", np.nan), "test_loss", "NaN"),
    (_first("test_loss", np.inf), "test_loss", "infinite"),
    (_first("test_loss", -1.0), "test_loss", "positive"),
    (_first("n_train", -5), "n_train", "≥ 0"),
    (_first("n_train", 12.5), "n_train", "integer"),
])
def test_bad_cells_name_file_row_and_column(tmp_path, change, column, words):
    path = tmp_path / "bad.csv"
    change(_tidy()).to_csv(path, index=False)
    with pytest.raises(CurveDataError) as err:
        read_curves(path)
    message = str(err.value)
    assert str(path) in message and "row 2" in message and repr(column) in message and words in message


def test_missing_column_conflicting_duplicates_empty_and_short(tmp_path):
    with pytest.raises(CurveDataError, match="missing column"):
        validate_curves(_tidy().drop(columns="test_loss"))
    dup = pd.concat([_tidy(), _tidy().iloc[[1]].assign(test_loss=9.9)])
    with pytest.raises(CurveDataError, match="conflicting duplicates"):
        validate_curves(dup)
    exact = pd.concat([_tidy(), _tidy().iloc[[1]]])
    assert len(validate_curves(exact)) == len(_tidy())
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(CurveDataError, match="empty"):
        read_curves(tmp_path / "empty.csv")
    (tmp_path / "header.csv").write_text("model,dataset,n_train,seed,test_loss\n")
    with pytest.raises(CurveDataError, match="no data rows"):
        read_curves(tmp_path / "header.csv")
    short = _tidy()[_tidy()["n_train"] <= 200]
    with pytest.raises(CurveDataError, match="at least 3"):
        validate_curves(short)
    with pytest.raises(CurveDataError, match="does not exist"):
        read_curves(tmp_path / "nope.csv")


def test_drop_invalid_reports_what_it_dropped():
    frame = _first("test_loss", np.nan)(_tidy())
    with pytest.warns(UserWarning, match="dropped 1"):
        clean = validate_curves(frame, drop_invalid=True)
    assert len(clean) == len(frame) - 1
    assert clean.attrs["dropped"] and "row 2" in clean.attrs["dropped"][0]


def test_wide_layout_errors_name_the_size_column(tmp_path):
    path = tmp_path / "wide.csv"
    path.write_text("config name,0,200,400,800,size,family\nm1,4.0,3.0,x,2.0,100,f\n")
    with pytest.raises(CurveDataError, match=r"row 2, column '400': test loss is not a number \('x'\)"):
        read_curves(path)


def test_empty_wide_cells_are_sizes_not_run_and_are_named(tmp_path):
    # A wide table has a cell for every (model, size): an empty one is no observation.
    path = tmp_path / "wide.csv"
    path.write_text("config name,0,200,400,800,1600,size,family\n"
                    "m1,4.0,3.0,,2.0,1.8,100,f\nm2,,3.1,2.9,nan,2.2,200,f\n")
    with pytest.warns(UserWarning, match=r"3 empty cell\(s\).*row 2, column '400'; row 3, column '0'; "
                                         r"row 3, column '800'"):
        table = read_curves(path)
    assert sorted(table.loc[table["model"] == "m1", "n_train"]) == [0, 200, 800, 1600]
    assert sorted(table.loc[table["model"] == "m2", "n_train"]) == [200, 400, 1600]
    assert table.attrs["not_measured"] == ["row 2, column '400'", "row 3, column '0'", "row 3, column '800'"]
    assert table.attrs["dropped"] == []
