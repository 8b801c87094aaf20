"""DVC stage `embed`: embed corpus and queries with the frozen encoder, once.

Writes data/embeddings/{corpus,queries}.npy (float32, L2-normalised) and meta.json.
"""

from pathlib import Path

from smec import encode, params
from smec.cli import main, parser

ROOT = Path(__file__).resolve().parents[1]  # the checkout DVC runs (a temp copy under --temp)


def cli() -> None:
    args = parser(__doc__, ROOT).parse_args()
    stats = encode.run(params.load(args.params), ROOT)
    print(f"embedded {stats['corpus_count']} documents at {stats['corpus_texts_per_s']} texts/s")


if __name__ == "__main__":
    main(cli)
