"""DVC stage `embed`: embed corpus and queries with the frozen encoder, once.

Writes data/embeddings/{corpus,queries}.npy (float32, L2-normalised) and meta.json.
"""

import argparse

from smec import encode, params, tracking
from smec.errors import main


def cli() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    args = ap.parse_args()
    stats = encode.run(params.load(args.params), tracking.root())
    print(f"embedded {stats['corpus_count']} documents at {stats['corpus_texts_per_s']} texts/s")


if __name__ == "__main__":
    main(cli)
