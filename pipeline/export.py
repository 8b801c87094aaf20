"""DVC stage `export`: every compared method at every width as a model people can take away.

For each method of the comparison (its seed-0 modules) and each width: a sentence-transformers
model folder `<models>/<method>-<dim>/` (the frozen encoder's modules plus bias-free linear
`Dense` layers; `SentenceTransformer(path)` loads it offline), the same model logged with
MLflow's `sentence_transformers` flavour on the method's seed-0 training run (its nDCG@10 and
bytes per vector attached; where that run is in no store here, the committed arms having been
trained in another workspace, on the export stage's own run, tagged with it), MTEB's result
JSON for the data set's retrieval task (`<mteb>/<method>-<dim>/no_revision_available/`), a TREC
run of the top 100 per test query (`<trec>/<method>-<dim>.trec`), and every test query's nDCG@10
(`--per-query`). The scores come from the pipeline's cached embeddings, as in evaluate.

The encoder is stored once on each side: the model folders hard-link its files (one copy on
disk), and in MLflow it is logged once, on the export stage's run, and every model refers to it
(`smec.report.shared_encoder`); re-running the stage adds no copy of it.
"""

import hashlib
import time
from pathlib import Path

import _bootstrap  # first: this checkout's code, under the project's interpreter
import mlflow
import pandas as pd
import torch

from smec import params
from smec.data import artifacts, encode, inputs
from smec.errors import SmecError
from smec.infra import atomic, tracking
from smec.infra.cli import main, parser
from smec.measure import quantize, retrieval
from smec.model import methods
from smec.report import export

OUTPUTS = ("models", "mteb", "trec", "per-query")
FLAVOUR = {"pip_requirements": ["sentence-transformers", "mlflow", "torch"]}


ENCODER_TAG = "smec.encoder.digest"
TRAIN_RUN_TAG = "smec.train_run"  # a logged model's seed-0 training run (as its run.json says)


def encoder_digest(encoder) -> str:
    """What identifies the encoder's weights, wherever they were loaded from."""
    h = hashlib.sha256()
    for name, tensor in encoder.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def logged_encoder(encoder, name: str, experiment: str) -> str:
    """The `models:/<id>` URI of the encoder logged in the experiment, logged now (on the
    active run) only if no ready logged model carries its digest: a re-run adds no copy."""
    from mlflow.entities import LoggedModelStatus

    digest = encoder_digest(encoder)
    found = mlflow.search_logged_models(
        experiment_ids=[tracking.experiment_id(experiment)],
        filter_string=f"tags.`{ENCODER_TAG}` = '{digest}'",
        output_format="list",
    )
    ready = [m for m in found if m.status == LoggedModelStatus.READY]
    if ready:
        return ready[0].model_uri
    info = mlflow.sentence_transformers.log_model(
        encoder, name=f"encoder-{Path(name).name}", tags={ENCODER_TAG: digest}, **FLAVOUR
    )
    return info.model_uri


def model_run(run_id: str, path: Path, stage_run: str) -> str:
    """The run a method's models are logged on: its seed-0 training run, or where that run is
    in no store here (the comparison's arms are committed and were trained in another
    workspace), the export stage's own run."""
    try:
        tracking.check_run_exists(run_id, path)
    except SmecError:
        print(f"{path}: run {run_id} is not in this MLflow store; its models go on the export run")
        return stage_run
    return run_id


def log_model(model, runs: tuple[str, str], name: str, example: list[str], metrics: dict) -> None:
    """The model on `runs` = (the run it is logged on, its training run), with a signature (text
    in, a float vector out) and the metrics that rank it on MLflow's Models page (nDCG@10,
    bytes per vector)."""
    from mlflow.models import infer_signature

    signature = infer_signature(example, model.encode(example))
    on, trained = runs
    with mlflow.start_run(run_id=on):
        info = mlflow.sentence_transformers.log_model(
            model,
            name=name,
            signature=signature,
            input_example=example,
            tags={TRAIN_RUN_TAG: trained},
            **FLAVOUR,
        )
        mlflow.log_metrics(metrics, model_id=info.model_id)


def run(argv: list[str] | None = None) -> pd.DataFrame:
    ap = parser(
        __doc__,
        _bootstrap.CHECKOUT,
        inputs=inputs.OPTIONS,
        outputs=OUTPUTS,
        many=("modules", "runs"),
    )
    args = ap.parse_args(argv)
    p = params.load(args.params, args.cell, artifacts.width(args.queries_emb))
    tracking.use_store()
    run_ids = [artifacts.read_json(path)["run_id"] for path in args.runs]
    stage_in = inputs.read(args)
    ds = stage_in.ds
    c = torch.from_numpy(stage_in.corpus_emb)
    test = retrieval.TestSet.of(ds, torch.from_numpy(stage_in.queries_emb))
    encoder = encode.load_model(p.encoder.model, p.encoder.max_seq_length, torch.device("cpu"))
    with tracking.stage_run(p, "export", _bootstrap.CHECKOUT) as stage:
        encoder_uri = logged_encoder(encoder, p.encoder.model, p.tracking.experiment)
    on = [model_run(r, path, stage.info.run_id) for r, path in zip(run_ids, args.runs, strict=True)]
    first = export.shared_encoder(encode.model_path(p.encoder.model), encoder_uri)
    task = export.mteb_task_name(p.data.name)
    example = list(ds.queries.text[:2])
    per_query, like = [], None
    with (
        atomic.directory(args.models) as models_dir,
        atomic.directory(args.mteb) as mteb_dir,
        atomic.directory(args.trec) as trec_dir,
    ):
        for modules_path, runs in zip(args.modules, zip(on, run_ids, strict=True), strict=True):
            meta, states = artifacts.read_modules(modules_path)
            modules, dims = methods.restore(meta, states), meta["dims"]
            method = methods.learned(meta["method"])
            for d in dims:
                name = export.model_name(method.name, d)
                start = time.perf_counter()
                zq = method.embed_at(modules, dims, test.queries, d)[0]
                zc = method.embed_at(modules, dims, c, d)[0]
                scores, top = retrieval.search(zq, zc, 100)
                run = retrieval.run_dict(test.query_ids, test.corpus_ids, top)
                measures = retrieval.evaluate(test.qrels, run)
                result = export.mteb_result(task, measures, time.perf_counter() - start)
                artifacts.write_mteb(
                    mteb_dir / name / "no_revision_available" / f"{task}.json", result
                )
                (trec_dir / f"{name}.trec").write_text(
                    export.trec_run(test.query_ids, test.corpus_ids, top, scores, name)
                )
                ndcg = test.per_query(zq, zc)[["query_id", "ndcg_at_10"]]
                per_query.append(ndcg.assign(model=name))
                maps = [m[0] for m in method.linear_maps(modules, dims, d)]
                artifacts.write_model(
                    models_dir / name, export.sentence_transformer(encoder, maps), like
                )
                like = like or models_dir / name
                ranking = {
                    "ndcg_at_10": measures["ndcg_at_10"],
                    "bytes_per_vector": quantize.bytes_per_vector(d, "float32"),
                }
                log_model(
                    export.sentence_transformer(encoder, maps, first),
                    runs,
                    name,
                    example,
                    ranking,
                )
                print(f"exported {name}: nDCG@10 {measures['ndcg_at_10']:.4f}")
    table = pd.concat(per_query, ignore_index=True)[["model", "query_id", "ndcg_at_10"]]
    artifacts.write_csv(args.per_query, table, float_format="%.6f")
    with tracking.stage_run(p, "export", _bootstrap.CHECKOUT, run_id=stage.info.run_id):
        mlflow.log_artifact(str(args.per_query))
    return table


if __name__ == "__main__":
    main(run)
