"""Measurements: the gradient recorder's statistics, exact retrieval and its metrics, quantised
precisions, intervals, the seed figure's claims, and the comparison's statistics."""
