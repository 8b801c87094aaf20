"""smec: MRL vs SMRL Matryoshka compression heads, their gradient statistics and retrieval."""

__version__ = "0.1.0"
