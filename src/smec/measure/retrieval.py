"""Exact cosine search in memory-bounded chunks, the IR metrics, and the test set they score.

Metrics come from `ir-measures` (backed by `pytrec-eval-terrier`, i.e. trec_eval itself): the
field's reference implementation. Our ranking is handed to it as scores `k - rank`, so ties are
broken as the search broke them (by corpus order), not by trec_eval's own tie rule. One
exception: model selection's held-out nDCG@10, asked for every epoch of every training
(:meth:`TestSet.score_members`), is trec_eval's `ndcg_cut.10` computed here on the same ranking
(:class:`Judged`), since building a run for trec_eval cost more than the training; a test holds
the two to the same values on graded, partly unjudged rankings.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

import ir_measures
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from smec.infra import distributed

# MTEB's names for the measures, used everywhere: CSV columns, DVC metrics, MLflow.
MEASURES = {
    "ndcg_at_10": ir_measures.nDCG @ 10,
    "recall_at_100": ir_measures.R @ 100,
    "mrr_at_10": ir_measures.RR @ 10,
}
BLOCK = 64  # corpus rows per block of the search's pruning pass (`_merge_blocks`)


def _rows(corpus, lo: int, hi: int, device: torch.device) -> torch.Tensor:
    """Rows [lo, hi) of a tensor or an array (a memory-mapped `.npy` reads only those)."""
    if isinstance(corpus, torch.Tensor):
        return corpus[lo:hi].to(device)
    return torch.from_numpy(np.array(corpus[lo:hi])).to(device)  # a copy of one chunk


def _topk(s: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k columns per row by score descending, then column ascending.

    `torch.topk` is fast but breaks ties arbitrarily; its candidates are put in order by a
    stable sort over ascending columns, and the rare row with more tied scores at its k-th
    value than it kept is sorted whole.
    """
    vals, idx = torch.topk(s, k, dim=1, sorted=False)
    idx = idx.sort(dim=1).values
    vals = s.gather(1, idx)
    order = torch.sort(vals, dim=1, descending=True, stable=True).indices
    vals, idx = vals.gather(1, order), idx.gather(1, order)
    short = ((s >= vals[:, -1:]).sum(dim=1) > k).nonzero().squeeze(1)
    if len(short):
        full = torch.sort(s[short], dim=1, descending=True, stable=True)
        vals[short], idx[short] = full.values[:, :k], full.indices[:, :k]
    return vals, idx


def _merge_blocks(s: torch.Tensor, best_s: torch.Tensor, best_i: torch.Tensor, start: int):
    """Merge a chunk's scores `s` (corpus rows from `start`) into a full top-k, looking only at
    the blocks of `BLOCK` columns whose best score beats the query's k-th.

    Once every query holds k results, a later chunk can only enter where it scores strictly
    above the k-th (a tie loses: its corpus row is higher), and on large corpora that is a few
    blocks per query: one pass for the block maxima replaces a top-k over the whole chunk.
    Candidates are laid out after the current top-k, so a tie keeps the lower corpus row.
    """
    blocks = F.pad(s, (0, -s.shape[1] % BLOCK), value=-torch.inf).unflatten(1, (-1, BLOCK))
    rows, cols = (blocks.amax(dim=2) > best_s[:, -1:]).nonzero(as_tuple=True)
    if not len(rows):
        return best_s, best_i
    hit, counts = torch.unique_consecutive(rows, return_counts=True)
    which = torch.repeat_interleave(torch.arange(len(hit), device=s.device), counts)
    slot = torch.arange(len(rows), device=s.device) - (counts.cumsum(0) - counts)[which]
    shape = (len(hit), int(counts.max()), BLOCK)
    cand_s = s.new_full(shape, -torch.inf)
    cand_i = torch.full(shape, -1, dtype=torch.long, device=s.device)
    cand_s[which, slot] = blocks[rows, cols]
    cand_i[which, slot] = start + cols[:, None] * BLOCK + torch.arange(BLOCK, device=s.device)
    vals, pos = _topk(torch.cat([best_s[hit], cand_s.flatten(1)], dim=1), best_s.shape[1])
    best_s, best_i = best_s.clone(), best_i.clone()
    best_s[hit] = vals
    best_i[hit] = torch.cat([best_i[hit], cand_i.flatten(1)], dim=1).gather(1, pos)
    return best_s, best_i


def _search_rows(q: torch.Tensor, corpus, k: int, lo: int, hi: int, chunk_size: int):
    """Top-k of corpus rows [lo, hi) for unit queries `q`, one chunk of rows at a time."""
    best_s = q.new_empty((len(q), 0))
    best_i = torch.empty((len(q), 0), dtype=torch.long, device=q.device)
    for start in range(lo, hi, chunk_size):
        chunk = F.normalize(
            _rows(corpus, start, min(start + chunk_size, hi), q.device).float(), dim=-1
        )
        s = q @ chunk.T
        if best_s.shape[1] == k:
            best_s, best_i = _merge_blocks(s, best_s, best_i, start)
            continue
        s, i = _topk(s, min(k, len(chunk)))
        best_s, best_i = distributed.merge_topk([best_s, s], [best_i, i + start], k)
    return best_s, best_i


@torch.no_grad()
def search(queries: torch.Tensor, corpus, k: int, chunk_size: int = 8192):
    """Top-k corpus rows per query by cosine similarity, ties by corpus row.

    `corpus` is a tensor or an array, e.g. a memory-mapped `.npy`: it is read `chunk_size` rows
    at a time, so memory stays at queries × (chunk_size + k) scores plus one chunk. Under
    torchrun every process searches a shard and all get the merged top-k
    (:func:`smec.infra.distributed.search`).
    """
    q = F.normalize(queries.float(), dim=-1)
    k = min(k, len(corpus))
    if distributed.world() > 1:
        shard = functools.partial(_search_rows, chunk_size=chunk_size)
        return distributed.search(shard, q, corpus, k)
    return _search_rows(q, corpus, k, 0, len(corpus), chunk_size)


@torch.no_grad()
def search_full(queries: torch.Tensor, corpus: torch.Tensor, k: int):
    """The same ranking from one full similarity matrix (the reference for tests and bench)."""
    s = F.normalize(queries.float(), dim=-1) @ F.normalize(corpus.float(), dim=-1).T
    top = torch.sort(s, dim=1, descending=True, stable=True).indices[:, : min(k, len(corpus))]
    return s.gather(1, top), top


def qrels_dict_from_pairs(rows) -> dict[str, dict[str, int]]:
    """{query: {document: relevance}} from (query, document, relevance) rows."""
    out: dict[str, dict[str, int]] = {}
    for q, d, s in rows:
        out.setdefault(str(q), {})[str(d)] = int(s)
    return out


def qrels_dict(qrels: pd.DataFrame) -> dict[str, dict[str, int]]:
    return qrels_dict_from_pairs(zip(qrels.query_id, qrels.corpus_id, qrels.score, strict=True))


def run_dict(query_ids, corpus_ids, top: torch.Tensor) -> dict[str, dict[str, float]]:
    """A TREC-style run from ranked corpus indices; score = k - rank."""
    top = top.cpu().numpy()
    k = top.shape[1]
    corpus_ids = np.asarray(corpus_ids)
    return {
        str(q): dict(
            zip(corpus_ids[row].tolist(), (k - np.arange(k)).astype(float).tolist(), strict=True)
        )
        for q, row in zip(query_ids, top, strict=True)
    }


def evaluate(qrels: dict, run: dict) -> dict[str, float]:
    """nDCG@10, Recall@100 and MRR@10 averaged over the queries of `qrels` (a query missing from
    the run scores 0)."""
    scores = ir_measures.calc_aggregate(list(MEASURES.values()), qrels, run)
    return {name: float(scores[m]) for name, m in MEASURES.items()}


NDCG_CUT = 10


@dataclass(frozen=True)
class Judged:
    """The qrels of a list of queries against a corpus, as arrays: the key query position ·
    n_docs + corpus row of every judged pair (sorted), its relevance, and each query's ideal
    DCG@10."""

    keys: np.ndarray
    gains: np.ndarray
    ideal: np.ndarray  # (Nq,)
    n_docs: int

    @classmethod
    def of(cls, query_ids: list[str], qrels: dict, corpus_ids: list[str]) -> Judged:
        row, n_docs = {c: i for i, c in enumerate(corpus_ids)}, len(corpus_ids)
        judged = {  # key -> relevance; -1 -> 0 keeps the arrays non-empty
            q * n_docs + row[d]: rel
            for q, qid in enumerate(query_ids)
            for d, rel in qrels.get(qid, {}).items()
            if rel > 0 and d in row
        } | {-1: 0}
        keys = np.array(sorted(judged), dtype=np.int64)
        rels = [
            sorted((r for r in qrels.get(q, {}).values() if r > 0), reverse=True) for q in query_ids
        ]
        ideal = [float(_dcg(np.array(r[:NDCG_CUT], dtype=np.float64))) for r in rels]
        gains = np.array([judged[k] for k in keys], dtype=np.float64)
        return cls(keys, gains, np.array(ideal), n_docs)

    def ndcg(self, top: np.ndarray) -> np.ndarray:
        """(..., Nq) each query's nDCG@10 of its ranked corpus rows `top` (..., Nq, k), as
        trec_eval's `ndcg_cut.10` computes it: gain = the qrels' relevance (unjudged: 0),
        discount log2(rank + 1), summed in rank order, over the ideal ordering's DCG (0 for
        a query with no relevant document)."""
        key = np.arange(top.shape[-2])[:, None] * self.n_docs + top[..., :NDCG_CUT]
        pos = np.searchsorted(self.keys, key).clip(max=len(self.keys) - 1)
        dcg = _dcg(np.where(self.keys[pos] == key, self.gains[pos], 0.0))
        return np.divide(dcg, self.ideal, out=np.zeros_like(dcg), where=self.ideal > 0)


def _dcg(gains: np.ndarray) -> np.ndarray:
    """Σ_i gains[..., i] / log2(i + 2), added in rank order as trec_eval adds them."""
    total = np.zeros(gains.shape[:-1])
    for i in range(gains.shape[-1]):
        total = total + gains[..., i] / np.log2(i + 2.0)
    return total


@dataclass(frozen=True)
class TestSet:
    """The test split of a prepared data set: its query ids (sorted), their frozen embeddings,
    their qrels, and the ids of the corpus they are searched against."""

    query_ids: list[str]
    queries: torch.Tensor
    qrels: dict
    corpus_ids: list[str]

    @classmethod
    def of(cls, ds, queries_emb: torch.Tensor) -> TestSet:
        test = ds.qrels[ds.qrels.split == "test"]
        qids = sorted(set(test.query_id))
        row_of = {qid: i for i, qid in enumerate(ds.queries.query_id)}
        queries = queries_emb[[row_of[i] for i in qids]]
        return cls(qids, queries, qrels_dict(test), list(ds.corpus.corpus_id))

    def run(self, zq: torch.Tensor, zc: torch.Tensor, chunk_size: int = 8192) -> dict:
        """The top 100 of compressed test queries `zq` against the compressed corpus `zc`."""
        _, top = search(zq, zc, 100, chunk_size)
        return run_dict(self.query_ids, self.corpus_ids, top)

    def score(self, zq: torch.Tensor, zc, chunk_size: int = 8192) -> dict[str, float]:
        """The measures of `zq` against `zc`, averaged over the test queries."""
        return evaluate(self.qrels, self.run(zq, zc, chunk_size))

    def per_query(self, zq: torch.Tensor, zc: torch.Tensor) -> pd.DataFrame:
        """Each test query's measures (one row per query of the qrels; a query the run lacks
        scores 0), for paired tests between methods."""
        run = self.run(zq, zc)
        rows: dict[str, dict[str, float]] = {q: dict.fromkeys(MEASURES, 0.0) for q in self.qrels}
        names = {m: name for name, m in MEASURES.items()}
        for metric in self.evaluator.iter_calc(run):
            rows[metric.query_id][names[metric.measure]] = float(metric.value)
        return pd.DataFrame([{"query_id": q, **v} for q, v in sorted(rows.items())])

    @functools.cached_property
    def evaluator(self):
        """trec_eval over the qrels, read once for every run it scores."""
        return ir_measures.evaluator(list(MEASURES.values()), self.qrels)

    @functools.cached_property
    def judged(self) -> Judged:
        return Judged.of(self.query_ids, self.qrels, self.corpus_ids)

    def score_members(self, zq: torch.Tensor, zc: torch.Tensor) -> list[float]:
        """nDCG@10 of each member's queries (S, Nq, d) against its corpus (S, Nc, d), averaged
        over the queries of the qrels: :meth:`Judged.ndcg` on each member's top 10."""
        k = min(NDCG_CUT, zc.shape[1])
        top = np.stack([search(zq[s], zc[s], k)[1].cpu().numpy() for s in range(len(zq))])
        return (self.judged.ndcg(top).sum(axis=1) / len(self.qrels)).tolist()

    def scores(self, method, modules, dims: list[int], corpus: torch.Tensor) -> list[list[dict]]:
        """Per member of a trained method, its measures at every width (`method.embed_at`
        compresses)."""
        zq = {d: method.embed_at(modules, dims, self.queries, d) for d in dims}
        zc = {d: method.embed_at(modules, dims, corpus, d) for d in dims}
        return [
            [{"dim": d, **self.score(zq[d][s], zc[d][s])} for d in dims]
            for s in range(len(next(iter(zq.values()))))
        ]


Variant = tuple[dict, torch.Tensor, torch.Tensor]  # (labels, queries, corpus)


def table(variants: Iterable[Variant], test: TestSet, chunk_size: int = 8192) -> pd.DataFrame:
    """The measures of every variant on the test set, one row each: its labels (`method`,
    `dim`, ...), then the measures."""
    rows = [{**labels, **test.score(zq, zc, chunk_size)} for labels, zq, zc in variants]
    return pd.DataFrame(rows)


def metric_key(row) -> str:
    """`<method>_d<dim>` (`compare_` first for a compared method's model, `_<precision>`
    after for a quantised one): the name of a row of the retrieval table in DVC and MLflow."""
    prefix = "compare_" if row.get("model") == "compare" else ""
    suffix = "" if row.get("precision", "float32") == "float32" else f"_{row['precision']}"
    return f"{prefix}{row['method']}_d{row['dim']}{suffix}"


def metrics(t: pd.DataFrame) -> dict:
    """Nested DVC metrics: `<key>: {measure: value}` (see :func:`metric_key`; MLflow gets the
    same names, flattened with a dot: `mrl_d96.ndcg_at_10`)."""
    return {metric_key(r): {m: round(float(r[m]), 6) for m in MEASURES} for _, r in t.iterrows()}


def flat_metrics(nested: dict) -> dict[str, float]:
    return {f"{k}.{m}": float(v) for k, ms in nested.items() for m, v in ms.items()}
