"""S-XBM, selectable cross-batch memory: SMEC's unsupervised term beyond the current batch.

**[src: abstract and framework figure; the loss form from a public reimplementation that cites
the paper's equation (weak)]** A FIFO queue of the last `capacity` *frozen* embeddings seen in
training: the queue holds row ids into the frozen tables, so nothing in it drifts as the heads
train. For each embedding i of the batch, its top-K most similar queue entries in the frozen
full space, itself excluded, and

    L_sxbm = mean over i in the batch, j in TopK(i) of | cos(z_i, z_j) − cos(x_i, x_j) |

with x the frozen full embeddings and z the step's current output for the same inputs (the
queue entries pass through the current head). The term counts once the queue holds K entries.
Sizes **[choice]**: capacity 4096 (capped by the number of distinct items), K = 10, weight
λ = 1; SMEC's step loss is the rank loss on the kept dimensions + λ · L_sxbm **[choice]**.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class Memory:
    """A FIFO queue of item ids (rows of a frozen table), oldest first."""

    def __init__(self, capacity: int, device: torch.device | str = "cpu"):
        if capacity < 1:
            raise ValueError(f"memory capacity {capacity} must be positive")
        self.capacity = capacity
        self.ids = torch.empty(0, dtype=torch.long, device=device)

    def __len__(self) -> int:
        return len(self.ids)

    def push(self, ids: torch.Tensor) -> None:
        """Enqueue a batch's ids; the oldest fall out past capacity."""
        self.ids = torch.cat([self.ids, ids.to(self.ids.device)])[-self.capacity :]

    def neighbours(self, full: torch.Tensor, batch: torch.Tensor, k: int) -> torch.Tensor:
        """(B, k) queue ids of each batch item's k most similar entries in the frozen space
        `full` (rows L2-normalised), the item itself excluded. Needs len(self) > k."""
        sims = full[batch] @ full[self.ids].T  # (B, len)
        sims = sims.masked_fill(batch[:, None] == self.ids[None, :], float("-inf"))
        return self.ids[sims.topk(k, dim=1).indices]


def loss(
    z_batch: torch.Tensor, z_neighbours: torch.Tensor, x_batch: torch.Tensor, x_neighbours
) -> torch.Tensor:
    """mean | cos(z_i, z_j) − cos(x_i, x_j) | over each item i and its neighbours j.

    Shapes: z_batch (B, d), z_neighbours (B, K, d); x likewise in the frozen space.
    """
    z = torch.einsum("bd,bkd->bk", F.normalize(z_batch, dim=-1), F.normalize(z_neighbours, dim=-1))
    x = torch.einsum("bd,bkd->bk", F.normalize(x_batch, dim=-1), F.normalize(x_neighbours, dim=-1))
    return (z - x).abs().mean()
