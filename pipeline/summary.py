"""DVC stage `summary`: the verdict across the grid's cells.

Per cell (the headline's comparison and every `grid.cells` cell's) and width, SMEC − Matryoshka-
Adaptor, SMEC − MRL and the best learned method (of `grid.methods`) − the best learning-free
baseline, each pooled over the cell's study replicates at the tuned arm, with its 95% interval
(`--table`); per contrast and width (a fraction of D: the cells' encoders differ), the random-
effects estimate over the cells with its Hartung-Knapp interval and heterogeneity (`--pooled`,
:mod:`smec.measure.meta`); and the forest plot of both (`--forest`, and as SVG `--forest-svg`).
"""

import _bootstrap  # first: this checkout's code, under the project's interpreter
import mlflow
import pandas as pd

from smec import params
from smec.data import artifacts
from smec.errors import SmecError
from smec.infra import tracking
from smec.infra.cli import main, parser
from smec.measure import meta
from smec.report import figures


def headline_name(p: params.Params) -> str:
    """The headline cell's name in the grid's terms (`scifact-minilm`)."""
    for name, keys in p.grid.encoders.items():
        if keys.get("model") == p.encoder.model:
            return f"{p.data.name}-{name}"
    return f"{p.data.name}-{p.encoder.model}"


def run(argv: list[str] | None = None) -> pd.DataFrame:
    ap = parser(
        __doc__,
        _bootstrap.CHECKOUT,
        inputs=("headline", "cells"),
        outputs=("table", "pooled", "forest", "forest-svg"),
    )
    args = ap.parse_args(argv)
    p = params.load(args.params)
    tracking.use_store()
    arm = "tuned" if p.compare.tuned else p.compare.inits[0]
    sources = {headline_name(p): args.headline}
    sources |= {cell: args.cells / cell / "comparison_pairs.csv" for cell in p.grid.compared}
    cells = pd.concat(
        [
            meta.cell_contrasts(artifacts.read_csv(path), arm, p.grid.methods).assign(cell=name)
            for name, path in sources.items()
        ],
        ignore_index=True,
    )
    pooled = meta.pool(cells)
    artifacts.write_csv(args.table, cells, float_format="%.6g")
    artifacts.write_csv(args.pooled, pooled, float_format="%.6g")
    caption = (
        f"{len(sources)} cells (data set-encoder), arm {arm}; each cell's interval over its study "
        "replicates; pooled: random effects (DerSimonian-Laird tau², Hartung-Knapp interval)"
    )
    stem = args.forest.with_suffix("")
    if args.forest_svg != stem.with_suffix(".svg"):
        raise SmecError(f"--forest-svg {args.forest_svg}: must be {stem.with_suffix('.svg')}")
    figures.save(figures.forest(cells, pooled, caption), stem)
    with tracking.stage_run(p, "summary", _bootstrap.CHECKOUT):
        for path in (args.table, args.pooled, args.forest):
            mlflow.log_artifact(str(path))
    print(pooled[["contrast", "width", "estimate", "low", "high", "cells", "verdict"]].to_string())
    return pooled


if __name__ == "__main__":
    main(run)
