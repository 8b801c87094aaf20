import pandas as pd
import pytest
import torch

from smec.measure import retrieval


def test_chunked_search_equals_full_ranking_ties_included():
    gen = torch.Generator().manual_seed(0)
    corpus = torch.randn(103, 8, generator=gen)
    corpus[50] = corpus[7] * 2.0  # same direction: identical cosine, a tie across chunks
    corpus[9] = corpus[7]  # and a tie inside a chunk
    queries = torch.cat([corpus[7:8], torch.randn(4, 8, generator=gen)])
    for chunk in (1, 10, 16, 103, 500):
        s, i = retrieval.search(queries, corpus, 20, chunk)
        fs, fi = retrieval.search_full(queries, corpus, 20)
        assert torch.equal(i, fi), chunk
        assert torch.allclose(s, fs)
    assert i[0, :3].tolist() == [7, 9, 50]  # ties broken by corpus order


def test_ties_straddling_the_kth_score_keep_the_lowest_corpus_rows():
    # 60 identical documents and 5 better ones: top-10 must be the 5, then rows 0..4 of the tie
    gen = torch.Generator().manual_seed(1)
    query = torch.randn(1, 8, generator=gen)
    corpus = torch.cat([query.repeat(60, 1) + 0.5, query.repeat(5, 1)])[torch.randperm(65)]
    corpus = torch.cat([corpus, torch.randn(30, 8, generator=gen)])
    for chunk in (7, 32, 95):
        s, i = retrieval.search(query, corpus, 10, chunk)
        fs, fi = retrieval.search_full(query, corpus, 10)
        assert torch.equal(i, fi), chunk
        assert torch.equal(s, fs)


def test_pruned_chunks_rank_like_the_full_matrix_across_blocks_and_chunks():
    # many blocks per chunk, so later chunks go through the block-max pruning; planted copies
    # of a query's near neighbours tie across blocks and chunks
    gen = torch.Generator().manual_seed(3)
    corpus = torch.randn(5000, 6, generator=gen)
    queries = torch.randn(40, 6, generator=gen)
    near = retrieval.search_full(queries[:8], corpus, 5)[1].flatten()
    corpus[4000 : 4000 + len(near)] = corpus[near] * 3.0  # ties in the last chunks
    corpus[1300 : 1300 + len(near)] = corpus[near]
    for chunk in (256, 1000, 4096):
        s, i = retrieval.search(queries, corpus, 30, chunk)
        fs, fi = retrieval.search_full(queries, corpus, 30)
        assert torch.equal(i, fi), chunk
        assert torch.allclose(s, fs)


def test_a_memory_mapped_corpus_searches_like_a_tensor(tmp_path):
    import numpy as np

    corpus = torch.randn(500, 16, generator=torch.Generator().manual_seed(2))
    np.save(tmp_path / "c.npy", corpus.numpy())
    mapped = np.load(tmp_path / "c.npy", mmap_mode="r")
    queries = torch.randn(3, 16)
    for chunk in (64, 1000):
        assert torch.equal(
            retrieval.search(queries, mapped, 50, chunk)[1],
            retrieval.search_full(queries, corpus, 50)[1],
        )


def test_k_larger_than_corpus():
    _s, i = retrieval.search(torch.randn(2, 4), torch.randn(3, 4), k=100, chunk_size=2)
    assert i.shape == (2, 3)


def test_metrics_match_hand_computed_values():
    qrels = {"q1": {"a": 1, "c": 1}, "q2": {"z": 1}}
    run = retrieval.run_dict(
        ["q1", "q2"], ["a", "b", "c", "z"], torch.tensor([[1, 0, 2, 3], [0, 1, 2, 3]])
    )
    got = retrieval.evaluate(qrels, run)
    # q1 ranks b, a, c, z: DCG = 1/log2(3) + 1/log2(4); IDCG = 1 + 1/log2(3)
    import math

    ndcg_q1 = (1 / math.log2(3) + 0.5) / (1 + 1 / math.log2(3))
    ndcg_q2 = (1 / math.log2(5)) / 1.0
    assert got["ndcg_at_10"] == pytest.approx((ndcg_q1 + ndcg_q2) / 2)
    assert got["mrr_at_10"] == pytest.approx((1 / 2 + 1 / 4) / 2)
    assert got["recall_at_100"] == pytest.approx(1.0)


def test_evaluation_follows_our_tie_order_not_trec_evals():
    # all scores tie in cosine; the run's scores encode rank, so the library keeps our order
    run = retrieval.run_dict(["q"], ["b", "a"], torch.tensor([[0, 1]]))
    assert retrieval.evaluate({"q": {"b": 1}}, run)["mrr_at_10"] == 1.0
    assert retrieval.evaluate({"q": {"a": 1}}, run)["mrr_at_10"] == 0.5


def test_measures_carry_mtebs_names():
    assert list(retrieval.MEASURES) == ["ndcg_at_10", "recall_at_100", "mrr_at_10"]
    t = pd.DataFrame(
        [{"method": "mrl", "dim": 96, "ndcg_at_10": 0.5, "recall_at_100": 1.0, "mrr_at_10": 0.25}]
    )
    nested = retrieval.metrics(t)
    assert nested == {"mrl_d96": {"ndcg_at_10": 0.5, "recall_at_100": 1.0, "mrr_at_10": 0.25}}
    assert retrieval.flat_metrics(nested)["mrl_d96.ndcg_at_10"] == 0.5


def test_qrels_dict():
    df = pd.DataFrame({"query_id": ["q", "q"], "corpus_id": ["a", "b"], "score": [1, 2]})
    assert retrieval.qrels_dict(df) == {"q": {"a": 1, "b": 2}}


def test_binary_vectors_score_exactly_so_ties_rank_alike_in_any_chunking():
    """Hamming ties are exact ties after the pad: the ranking does not depend on the chunk
    size (nor, in several processes, on the shards)."""
    from smec.measure import quantize

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(300, 48, generator=gen)
    signs = quantize.quantize(x, "binary", x)
    assert signs.shape == (300, 64) and torch.all(signs[:, 48:] == 1)
    q = signs[:20]
    want = retrieval.search(q, signs, 50, chunk_size=300)[1]
    for chunk in (7, 64, 129):
        assert torch.equal(retrieval.search(q, signs, 50, chunk_size=chunk)[1], want)
    hamming = (signs[:20, None, :48] != signs[None, :, :48]).sum(-1)
    order = torch.sort(hamming, dim=1, stable=True).indices[:, :50]
    assert torch.equal(want, order)  # Hamming's ranking, ties by corpus row


def test_members_heldout_ndcg_is_trec_evals_on_graded_partly_judged_rankings():
    """score_members computes nDCG@10 itself; trec_eval (through ir-measures) must agree on
    each member: graded gains, unjudged and absent documents, a query with nothing relevant,
    another with more relevant documents than 10, and tied scores."""
    import ir_measures

    gen = torch.Generator().manual_seed(3)
    n_q, n_docs, members = 12, 60, 3
    corpus_ids = [f"d{i}" for i in range(n_docs)]
    qids = [f"q{i}" for i in range(n_q)]
    qrels = {
        q: {
            f"d{int(d)}": int(r)
            for d, r in zip(
                torch.randperm(n_docs, generator=gen)[:4],
                torch.randint(0, 3, (4,), generator=gen),
                strict=True,
            )
        }
        for q in qids
    }
    qrels["q0"] = {"d1": 0, "d2": 0}  # judged, nothing relevant
    qrels["q1"] = {f"d{i}": 1 + i % 2 for i in range(14)}  # more relevant than the cut
    qrels["q2"]["gone"] = 2  # relevant but not in the corpus: only the ideal sees it
    zq = torch.randn(members, n_q, 6, generator=gen)
    zc = torch.randn(members, n_docs, 6, generator=gen)
    zc[:, 5] = zc[:, 4]  # a tie, broken by corpus row
    test = retrieval.TestSet(qids, zq[0], qrels, corpus_ids)
    want = []
    for s in range(members):
        run = retrieval.run_dict(qids, corpus_ids, retrieval.search(zq[s], zc[s], 100)[1])
        per_query = ir_measures.iter_calc([retrieval.MEASURES["ndcg_at_10"]], qrels, run)
        want.append(sum(m.value for m in per_query) / len(qrels))
    assert min(want) > 0.05
    assert test.score_members(zq, zc) == pytest.approx(want, rel=1e-12, abs=0)
