"""Compressed models people can take away: sentence-transformers folders, MTEB results, TREC runs.

Every trained method's width-d embedding is the frozen encoder followed by a few linear maps
(its `Method.linear_maps`), so an exported model is the encoder's own modules plus standard
`sentence_transformers.models.Dense` layers without bias or activation: it loads offline with
`SentenceTransformer(path)` and needs nothing from this project. An ADS head's selection is
folded into its map (the kept rows of W_t), an adaptor's skip connection into I + A, and
MRL's head exported at its full width also serves every narrower width through
`SentenceTransformer(path, truncate_dim=d)`. In MLflow the encoder is logged once and each
model refers to it (`smec.report.shared_encoder`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def sentence_transformer(encoder, maps: list[torch.Tensor], first=None):
    """The encoder's modules followed by one bias-free, activation-free Dense per map; `first`
    (a `SharedEncoder`) stands in for the encoder's transformer when given."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Dense

    layers = [module for module in encoder]
    if first is not None:
        layers[0] = first
    for w in maps:
        dense = Dense(w.shape[1], w.shape[0], bias=False, activation_function=nn.Identity())
        dense.linear.weight.data.copy_(w)
        layers.append(dense)
    return SentenceTransformer(modules=layers, device="cpu")


def shared_encoder(folder: str, model_uri: str):
    """The encoder saved in `folder` as a `SharedEncoder` referring to its logged copy.

    The class is loaded the way a model's loader will load it, through Hugging Face's dynamic
    modules (`transformers_modules.*`), so that saving a model copies `shared_encoder.py` into
    it and names the class by that file: the model needs nothing of this project."""
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    from smec.report import shared_encoder as source

    here = str(Path(source.__file__).parent)
    cls = get_class_from_dynamic_module("shared_encoder.SharedEncoder", here)
    return cls.referring(folder, model_uri)


def mteb_result(task_name: str, scores: dict[str, float], seconds: float):
    """MTEB's own result object for one retrieval task's test split (`main_score` nDCG@10)."""
    import mteb

    task = mteb.get_task(task_name)
    split = {**scores, "main_score": scores[task.metadata.main_score]}
    return mteb.TaskResult.from_task_results(task, {"test": {"default": split}}, seconds)


def mteb_task_name(data_name: str) -> str:
    """The MTEB retrieval task of a BEIR data set (`scifact` -> `SciFact`)."""
    import mteb

    for task in mteb.get_tasks(task_types=["Retrieval"]):
        if task.metadata.name.lower() == data_name.lower():
            return task.metadata.name
    raise ValueError(f"no MTEB retrieval task is named like the data set {data_name!r}")


def trec_run(query_ids, corpus_ids, top: torch.Tensor, scores: torch.Tensor, tag: str) -> str:
    """A TREC run file, `qid Q0 docid rank score tag`, ranks from 1 in our ranking's order.

    trec_eval orders a query's documents by score (ties by document id, descending), not by
    rank, so a tie in cosine is written a hair below the document before it: the file ranks
    exactly as the search did. The hair is 1e-6, above float32's resolution near 1 (6e-8): a
    1e-9 step was lost between the file and the evaluator (ir-measures / pytrec_eval)."""
    lines = []
    for qid, row, row_scores in zip(query_ids, top.tolist(), scores.tolist(), strict=True):
        previous = float("inf")
        for rank, (doc, score) in enumerate(zip(row, row_scores, strict=True), 1):
            score = min(score, previous - 1e-6)
            lines.append(f"{qid} Q0 {corpus_ids[doc]} {rank} {score:.9f} {tag}")
            previous = score
    return "\n".join(lines) + "\n"


def model_name(method: str, dim: int) -> str:
    """The folder (and MTEB model) name of a method at a width: `smec-96`."""
    return f"{method}-{dim}"
