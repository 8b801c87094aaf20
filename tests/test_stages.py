"""The stages' library entry points, in process, on a tiny data set with a real MLflow store:
outputs, traceability between figures and runs, the figure's structure."""

import json

import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from smec import beir, encode, figures, gradstats, params, retrieval, tracking, train


@pytest.fixture
def project(tmp_path, tiny_beir, mlflow_uri):
    """A project root with prepared data, random unit embeddings, both methods trained."""
    p = params.Params(
        data={"path": str(tiny_beir)},
        train={"epochs": 3, "batch_size": 8},
        render={"epochs": [0, 2]},
    )
    root = tmp_path
    ds = beir.run(p, root)
    rng = np.random.default_rng(0)
    unit = lambda n: (lambda x: x / np.linalg.norm(x, axis=1, keepdims=True))(  # noqa: E731
        rng.standard_normal((n, 384)).astype(np.float32)
    )
    encode.save(
        root / "data/embeddings",
        {"corpus": unit(len(ds.corpus)), "queries": unit(len(ds.queries))},
        {"dim": 384},
    )
    results = {m: train.run(p, m, root) for m in ("mrl", "smrl")}
    return p, root, results


def test_stage_outputs_and_traceability(project):
    p, root, _results = project
    for m in ("mrl", "smrl"):
        assert {f.name for f in (root / "runs" / m).iterdir()} == {
            "gradients.parquet",
            "history.csv",
            "run.json",
        }
        assert (root / "models" / m / "heads.pt").exists()
        assert not (root / "checkpoints" / m / "state.pt").exists()
    report = gradstats.run(p, root)
    assert set(report) >= {"claim1_low_rows_gradient", "claim2_variance", "claim3_fall"}
    table = pd.read_csv(root / "reports/gradstats.csv")
    assert list(table.columns[:5]) == [
        "method",
        "epoch",
        "avg_grad_low",
        "avg_grad_high",
        "grad_var",
    ]
    assert len(table) == 2 * 3
    t = retrieval.run(p, root)
    assert set(t.method) == {"mrl", "smrl", "truncate", "pca"}
    assert set(t.dim[t.method == "truncate"]) == {96, 192, 384}
    out = figures.run(p, root)

    client = mlflow.MlflowClient(tracking.tracking_uri())
    report_run = client.get_run(out["report_run"])
    train_ids = {
        m: json.loads((root / "runs" / m / "run.json").read_text())["run_id"]
        for m in ("mrl", "smrl")
    }
    for m, run_id in train_ids.items():
        assert report_run.data.tags[f"train_run.{m}"] == run_id  # figure -> its runs
        run = client.get_run(run_id)
        assert run.data.tags["report_run"] == out["report_run"]  # run -> its figure
        assert run.data.tags[tracking.TAG_STAGE] == "manual"
        assert run.data.tags[tracking.TAG_COMMIT]
        assert run.data.params["train.loss"] == "rank"
        history = client.get_metric_history(run_id, "grad_var")
        assert [h.step for h in history] == [0, 1, 2]
    png = Image.open(root / "figures/gradient_stats.png")
    assert json.loads(png.info["smec.train_runs"]) == train_ids
    assert png.info["smec.commit"] == tracking.commit()
    artifacts = {a.path for a in client.list_artifacts(out["report_run"])}
    assert {"gradient_stats.png", "claims.json", "gradstats.csv"} <= artifacts


def test_render_refuses_a_run_json_naming_a_missing_run(project):
    p, root, _ = project
    gradstats.run(p, root)
    retrieval.run(p, root)
    path = root / "runs/mrl/run.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "run_id": "0" * 32}))
    with pytest.raises(Exception, match=r"run.json: run 0+ is not in the MLflow store"):
        figures.run(p, root)


def seed_table():
    seed = {  # the seed figure's numbers
        ("smrl", 0): (1.198, 1.054, 8.84e-8),
        ("mrl", 0): (3.666, 1.188, 3.07e-7),
        ("smrl", 10): (0.063, 0.062, 8.97e-9),
        ("mrl", 10): (0.184, 0.062, 2.27e-8),
        ("smrl", 20): (0.024, 0.026, 1.48e-9),
        ("mrl", 20): (0.081, 0.025, 4.93e-9),
        ("smrl", 30): (0.015, 0.013, 5.78e-10),
        ("mrl", 30): (0.038, 0.013, 1.87e-9),
    }
    return pd.DataFrame(
        [
            {"method": m, "epoch": e, "avg_grad_low": lo, "avg_grad_high": hi, "grad_var": v}
            for (m, e), (lo, hi, v) in seed.items()
        ]
    )


def test_seed_figure_structure():
    table = seed_table()
    fig = figures.gradient_stats(table, [0, 10, 20, 30], [192, 96], "caption")
    ax, var_ax = fig.axes
    assert ax.get_yscale() == var_ax.get_yscale() == "log"
    assert (ax.get_xlabel(), ax.get_ylabel(), var_ax.get_ylabel()) == (
        "Epochs",
        "Gradient Size",
        "var",
    )
    assert len(ax.patches) == 4 * 4
    labels = [t.get_text() for t in var_ax.get_legend().get_texts()]
    assert labels == [
        "Average Gradient (ω_i,i∈[0,96], SMRL)",
        "Average Gradient (ω_j,j∈[96,192], SMRL)",
        "Average Gradient (ω_i,i∈[0,96], MRL)",
        "Average Gradient (ω_j,j∈[96,192], MRL)",
        "Gradient Variance (ω_k,k∈[0,192], SMRL)",
        "Gradient Variance (ω_k,k∈[0,192], MRL)",
    ]
    t = table.set_index(["method", "epoch"])
    smrl_line, mrl_line = var_ax.lines
    assert list(mrl_line.get_ydata()) == [t.loc[("mrl", e), "grad_var"] for e in (0, 10, 20, 30)]
    assert list(smrl_line.get_xdata()) == [0, 10, 20, 30]
    heights = sorted(p.get_height() for p in ax.patches)
    assert heights[-1] == 3.666 and heights[0] == 0.013
    assert ax.get_ylim() == (0.01, 10.0)  # whole decades, as the seed's axis
    plt.close(fig)


def test_legend_ranges_follow_method_dims():
    labels = figures.seed_labels([64, 32])
    assert labels["mrl.avg_grad_low"] == "Average Gradient (ω_i,i∈[0,32], MRL)"
    assert labels["smrl.grad_var"] == "Gradient Variance (ω_k,k∈[0,64], SMRL)"


def test_saved_figures_are_byte_identical(tmp_path):
    for name in ("a", "b"):
        figures.save(
            figures.gradient_stats(seed_table(), [0, 10, 20, 30], [192, 96], "c"),
            tmp_path / name,
            {"smec.commit": "x"},
        )
    for ext in ("png", "svg"):
        assert (tmp_path / f"a.{ext}").read_bytes() == (tmp_path / f"b.{ext}").read_bytes()
