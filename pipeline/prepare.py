"""DVC stage `prepare`: read a BEIR-format data set in place, validate and split it.

Finds the folder (data.path, $BEIR_DATA_DIR/<name>, ../shared/data/<name>, else a download of
the public BEIR zip), labels the qrels train / heldout / test (data.split_seed) and writes the
three tables as parquet.
"""

import _bootstrap  # first: this checkout's code, under the project's interpreter

from smec import params
from smec.data import artifacts, beir
from smec.infra import tracking
from smec.infra.cli import main, parser

OUTPUTS = ("corpus", "queries", "qrels")


def run(argv: list[str] | None = None) -> artifacts.Dataset:
    args = parser(__doc__, _bootstrap.CHECKOUT, outputs=OUTPUTS).parse_args(argv)
    p = params.load(args.params, args.cell)
    # relative paths and ../shared are anchored at the repository DVC runs from, which is not
    # the temporary copy that `dvc exp run --temp` executes in
    folder = beir.resolve_path(
        p.data.name, p.data.path, tracking.root(), tracking.root() / "data" / "raw"
    )
    ds = beir.prepare(folder, p.data)
    artifacts.write_prepared(ds, args.corpus, args.queries, args.qrels)
    counts = ds.qrels.groupby("split").query_id.nunique().to_dict()
    print(
        f"prepared {folder}: {len(ds.corpus)} documents, {len(ds.queries)} queries "
        f"(queries per split: {counts})"
    )
    return ds


if __name__ == "__main__":
    main(run)
