"""The registry of compression methods: one object per method, in the order tables and figures
show them. Adding a method is one file in this folder and one line here; the stages, the
comparison, the figures and the export read this registry (and `dvc.yaml`'s `compare` foreach
must list every learned method: tests/test_dvc_yaml.py keeps the two equal).
"""

from __future__ import annotations

import torch

from smec.errors import SmecError
from smec.model.methods.base import Baseline, Method
from smec.model.methods.mrl import MRL
from smec.model.methods.mrl_adaptor import MatryoshkaAdaptor
from smec.model.methods.pca import PCA, WhitenedPCA
from smec.model.methods.random_projection import RandomProjection
from smec.model.methods.search_adaptor import SearchAdaptor
from smec.model.methods.smec import SMEC
from smec.model.methods.smrl import SMRL
from smec.model.methods.smrl_ads import SMRLADS
from smec.model.methods.smrl_sxbm import SMRLSXBM
from smec.model.methods.truncate import Truncate
from smec.params import Methods, Train

REGISTRY: dict[str, Method | Baseline] = {
    m.name: m
    for m in (
        Truncate(),
        PCA(),
        WhitenedPCA(),
        RandomProjection(),
        MRL(),
        SMRL(),
        SMRLADS(),
        SMRLSXBM(),
        SMEC(),
        MatryoshkaAdaptor(),
        SearchAdaptor(),
    )
}
LEARNED = tuple(name for name, m in REGISTRY.items() if m.learned)
BASELINES = tuple(name for name, m in REGISTRY.items() if not m.learned)


def get(name: str) -> Method | Baseline:
    """The registered method `name` (one line naming the known ones otherwise)."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise SmecError(f"unknown method {name!r}; known: {', '.join(REGISTRY)}") from None


def learned(name: str) -> Method:
    """The learned method `name`."""
    method = get(name)
    if not method.learned:
        raise SmecError(f"{name!r} is a learning-free baseline; learned: {', '.join(LEARNED)}")
    return method


def restore(meta: dict, states: list[dict]) -> list:
    """A method's trained modules (one member) from `artifacts.read_modules`, in evaluation
    mode (`meta`: `method`, `dims`, `in_dim`, and the `bias` and `methods` options they were
    built with)."""
    method = learned(meta["method"])
    cfg = Train(method_dims=meta["dims"], bias=meta.get("bias", False))
    opts = Methods(**meta.get("methods", {}))
    modules = []
    for spec, state in zip(method.plan(cfg, meta["in_dim"]), states, strict=True):
        module = method.build(spec, cfg, opts, [0])
        module.load_state_dict(state)
        modules.append(module.requires_grad_(False).eval())
    return modules


def baselines(q: torch.Tensor, c: torch.Tensor, dims: list[int], seeds: int = 1):
    """(labels, queries, corpus) of every learning-free baseline at every width, each fitted on
    the corpus `c`: one fit for a deterministic baseline, one per seed for a seeded one
    (labels: `method`, `dim`, `seed`; seeds outermost, then widths)."""
    for seed in range(seeds):
        fitted = {
            name: REGISTRY[name].fit(c, seed)
            for name in BASELINES
            if seed == 0 or REGISTRY[name].seeded
        }
        for d in dims:
            for name, embed in fitted.items():
                yield {"method": name, "dim": d, "seed": seed}, embed(q, d), embed(c, d)
