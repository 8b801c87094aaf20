"""DVC stage `export`: every compared method at every width as a model people can take away.

For each method of the comparison (its seed-0 modules) and each width: a sentence-transformers
model folder `<models>/<method>-<dim>/` (the frozen encoder's modules plus bias-free linear
`Dense` layers; `SentenceTransformer(path)` loads it offline), the same model logged with
MLflow's `sentence_transformers` flavour on the method's seed-0 training run, MTEB's result
JSON for the data set's retrieval task (`<mteb>/<method>-<dim>/no_revision_available/`), a TREC
run of the top 100 per test query (`<trec>/<method>-<dim>.trec`), and every test query's
nDCG@10 (`--per-query`). The scores come from the pipeline's cached embeddings, as in evaluate.
"""

import time

import _bootstrap  # first: this checkout's code, under the project's interpreter
import mlflow
import pandas as pd
import torch

from smec import params
from smec.data import artifacts, encode, inputs
from smec.infra import atomic, tracking
from smec.infra.cli import main, parser
from smec.measure import retrieval
from smec.model import methods
from smec.report import export

OUTPUTS = ("models", "mteb", "trec", "per-query")


def log_model(model, run_id: str, name: str, example: list[str]) -> None:
    """The model on its training run, with a signature (text in, a float vector out)."""
    from mlflow.models import infer_signature

    signature = infer_signature(example, model.encode(example))
    with mlflow.start_run(run_id=run_id):
        mlflow.sentence_transformers.log_model(
            model,
            name=name,
            signature=signature,
            input_example=example,
            pip_requirements=["sentence-transformers", "torch"],
        )


def run(argv: list[str] | None = None) -> pd.DataFrame:
    ap = parser(
        __doc__,
        _bootstrap.CHECKOUT,
        inputs=inputs.OPTIONS,
        outputs=OUTPUTS,
        many=("modules", "runs"),
    )
    args = ap.parse_args(argv)
    p = params.load(args.params)
    tracking.use_store()
    run_ids = [artifacts.read_json(path)["run_id"] for path in args.runs]
    for run_id, path in zip(run_ids, args.runs, strict=True):  # the models are logged there
        tracking.check_run_exists(run_id, path)
    stage_in = inputs.read(args)
    ds = stage_in.ds
    c = torch.from_numpy(stage_in.corpus_emb)
    test = retrieval.TestSet.of(ds, torch.from_numpy(stage_in.queries_emb))
    encoder = encode.load_model(p.encoder.model, p.encoder.max_seq_length, torch.device("cpu"))
    task = export.mteb_task_name(p.data.name)
    example = list(ds.queries.text[:2])
    per_query = []
    with (
        atomic.directory(args.models) as models_dir,
        atomic.directory(args.mteb) as mteb_dir,
        atomic.directory(args.trec) as trec_dir,
    ):
        for modules_path, run_id in zip(args.modules, run_ids, strict=True):
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
                model = export.sentence_transformer(encoder, maps)
                model.save(str(models_dir / name))
                log_model(model, run_id, name, example)
                print(f"exported {name}: nDCG@10 {measures['ndcg_at_10']:.4f}")
    table = pd.concat(per_query, ignore_index=True)[["model", "query_id", "ndcg_at_10"]]
    artifacts.write_csv(args.per_query, table, float_format="%.6f")
    with tracking.stage_run(p, "export", _bootstrap.CHECKOUT):
        mlflow.log_artifact(str(args.per_query))
    return table


if __name__ == "__main__":
    main(run)
