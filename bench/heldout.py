"""Model selection's held-out nDCG@10: computed in the project against a run handed to trec_eval.

Every epoch of every training scores its held-out queries at each width it serves
(`smec.training.loop.StepTrainer.heldout_ndcg`, and each trial of a study):
`retrieval.TestSet.score_members`, which searches each member's top 10 and computes trec_eval's
`ndcg_cut.10` itself (`retrieval.Judged`). The baseline is what it replaced, run here on the
same inputs: each member's top 100 written as a TREC run (`retrieval.run_dict`) and scored by
`ir-measures` (trec_eval through `pytrec-eval-terrier`).

The shapes are SciFact's held-out epoch in the comparison (defaults): 5 members, 81 queries
with 1 to 3 graded relevant documents each, a 5,183-document corpus, widths 192, 96 and 48,
seeded random vectors. Alternating timed repeats after a warm-up; both must give the same
values (`max_abs_diff`).

The last stdout line is one JSON object: fast_over_trec_eval (trec_eval's seconds / the
project's: above 1 is faster), ms_per_epoch_fast, ms_per_epoch_trec_eval, max_abs_diff, ...
"""

from __future__ import annotations

import argparse

import ir_measures
import torch
from harness import alternate, emit, machine, medians

from smec.measure import retrieval


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--members", type=int, default=5, help="default: %(default)s")
    ap.add_argument("--queries", type=int, default=81, help="default: %(default)s")
    ap.add_argument("--docs", type=int, default=5183, help="default: %(default)s")
    ap.add_argument("--dims", type=int, nargs="+", default=[192, 96, 48])
    ap.add_argument("--repeats", type=int, default=15, help="default: %(default)s")
    ap.add_argument("--quick", action="store_true", help="smoke run: 3 repeats")
    args = ap.parse_args()
    if args.quick:
        args.repeats = 3
    return args


def make_test(args: argparse.Namespace) -> tuple[retrieval.TestSet, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    qids = [f"q{i}" for i in range(args.queries)]
    cids = [f"d{i}" for i in range(args.docs)]
    qrels = {}
    for q in qids:
        n = int(torch.randint(1, 4, (1,), generator=gen))
        docs = torch.randperm(args.docs, generator=gen)[:n].tolist()
        qrels[q] = {f"d{d}": int(torch.randint(1, 3, (1,), generator=gen)) for d in docs}
    zq = torch.randn(args.members, args.queries, max(args.dims), generator=gen)
    zc = torch.randn(args.members, args.docs, max(args.dims), generator=gen)
    zc[:, :, :8] += zq[:, :1, :8]  # some structure, so the nDCG is not all zeros
    return retrieval.TestSet(qids, zq[0], qrels, cids), zq, zc


def trec_eval(test: retrieval.TestSet, zq: torch.Tensor, zc: torch.Tensor) -> list[float]:
    """The replaced path: each member's top 100 as a TREC run, scored by ir-measures."""
    run, qrels = {}, {}
    for s in range(len(zq)):
        _, top = retrieval.search(zq[s], zc[s], 100)
        names = [f"{s}:{q}" for q in test.query_ids]
        run |= retrieval.run_dict(names, test.corpus_ids, top)
        qrels |= {f"{s}:{q}": test.qrels[q] for q in test.query_ids}
    totals = [0.0] * len(zq)
    for metric in ir_measures.iter_calc([retrieval.MEASURES["ndcg_at_10"]], qrels, run):
        totals[int(metric.query_id.split(":", 1)[0])] += metric.value
    return [total / len(test.qrels) for total in totals]


def main() -> None:
    args = parse_args()
    test, zq, zc = make_test(args)
    print(
        f"{args.members} members, {args.queries} queries, {args.docs} docs, widths {args.dims}, "
        f"{args.repeats} repeats, {machine()}"
    )

    def epoch(score):
        return lambda: [score(zq[..., :d], zc[..., :d]) for d in args.dims]

    runs = {
        "fast": epoch(test.score_members),
        "trec_eval": epoch(lambda q, c: trec_eval(test, q, c)),
    }
    for fn in runs.values():  # warm-up
        fn()
    seconds, last = alternate(runs, args.repeats, verbose=False)
    med = medians(seconds)
    diff = max(
        abs(a - b)
        for fast, ref in zip(last["fast"], last["trec_eval"], strict=True)
        for a, b in zip(fast, ref, strict=True)
    )
    ratio = med["trec_eval"] / med["fast"]
    print(f"fast {1e3 * med['fast']:.1f} ms/epoch, trec_eval {1e3 * med['trec_eval']:.1f} ms/epoch")
    print(f"fast_over_trec_eval {ratio:.2f}, max_abs_diff {diff:.2e}")
    emit(
        {
            "fast_over_trec_eval": round(ratio, 3),
            "ms_per_epoch_fast": round(1e3 * med["fast"], 2),
            "ms_per_epoch_trec_eval": round(1e3 * med["trec_eval"], 2),
            "max_abs_diff": diff,
            "members": args.members,
            "queries": args.queries,
            "docs": args.docs,
            "dims": args.dims,
            "repeats": args.repeats,
        }
    )


if __name__ == "__main__":
    main()
