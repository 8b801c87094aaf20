"""S-XBM, selectable cross-batch memory: SMEC's unsupervised term beyond the current batch.

**[src: abstract and framework figure; the loss form from a public reimplementation that cites
the paper's equation (weak)]** A FIFO queue of the last `capacity` *frozen* embeddings seen in
training: the queue holds row ids into the frozen tables, so nothing in it drifts as the heads
train. For each embedding i of the batch, its top-K most similar queue entries in the frozen
full space, itself excluded, and

    L_sxbm = mean over i in the batch, j in TopK(i) of | cos(z_i, z_j) − cos(x_i, x_j) |

with x the frozen full embeddings and z the step's current output for the same inputs (the
queue entries pass through the current head, on the coordinates the step keeps). The term
counts once the queue holds more than K entries. **[choice]**: the queue holds distinct items
(one seen again moves to the newest end); capacity 4096 (capped by the number of distinct
training items); K = 10; weight λ = 1; as in XBM the memory side is a constant: the
neighbours' z are computed without gradient, which flows through the batch's items (this keeps
SMEC's step within a small factor of SMRL's). SMEC's step loss is the rank loss on the kept
dimensions + λ · L_sxbm **[choice]**.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from smec.params import Methods


class Memory:
    """A FIFO queue of distinct item ids (rows of a frozen table), oldest first: an item seen
    again moves to the newest end, so no neighbour is counted twice."""

    def __init__(self, capacity: int, device: torch.device | str = "cpu"):
        if capacity < 1:
            raise ValueError(f"memory capacity {capacity} must be positive")
        self.capacity = capacity
        self.ids = torch.empty(0, dtype=torch.long, device=device)

    def __len__(self) -> int:
        return len(self.ids)

    def push(self, ids: torch.Tensor) -> None:
        """Enqueue a batch's ids (in their order, each once); the oldest fall out past capacity."""
        ids = first_occurrences(ids.to(self.ids.device))
        older = self.ids[~torch.isin(self.ids, ids)]
        self.ids = torch.cat([older, ids])[-self.capacity :]

    def neighbours(
        self, sims: torch.Tensor, batch: torch.Tensor, k: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each batch item's k most similar queue entries, itself excluded: their ids (B, k)
        and frozen similarities (B, k), from `sims` (B, len(self)), the frozen-space cosines
        of the batch items to the queue's entries. Needs len(self) > k."""
        sims = sims.masked_fill(batch[:, None] == self.ids[None, :], float("-inf"))
        top = sims.topk(k, dim=1)
        return self.ids[top.indices], top.values


def first_occurrences(ids: torch.Tensor) -> torch.Tensor:
    """`ids` without repeats, in the order each first appears."""
    uniq, inverse = torch.unique(ids, return_inverse=True)
    first = torch.full((len(uniq),), len(ids), dtype=torch.long, device=ids.device)
    first = first.scatter_reduce(0, inverse, torch.arange(len(ids), device=ids.device), "amin")
    return ids[first.sort().values]


class Similarities:
    """Frozen-space cosines among the items that can enter the memory (the training queries
    and documents), computed once: the neighbour search then costs a lookup, not a product."""

    def __init__(self, full: torch.Tensor, universe: torch.Tensor):
        self.local = torch.full((len(full),), -1, dtype=torch.long, device=full.device)
        self.local[universe] = torch.arange(len(universe), device=full.device)
        x = full[universe]
        self.table = x @ x.T

    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(len(a), len(b)) cosines of items `a` to items `b` (global ids)."""
        return self.table[self.local[a][:, None], self.local[b][None, :]]


def loss(z_batch: torch.Tensor, z_neighbours: torch.Tensor, frozen: torch.Tensor) -> torch.Tensor:
    """mean | cos(z_i, z_j) − cos(x_i, x_j) | over each item i and its neighbours j.

    Shapes: z_batch (B, d), z_neighbours (B, K, d), frozen (B, K) the frozen-space cosines.
    """
    z = torch.einsum("bd,bkd->bk", F.normalize(z_batch, dim=-1), F.normalize(z_neighbours, dim=-1))
    return (z - frozen).abs().mean()


class CrossBatchTerm:
    """λ · L_sxbm of a batch against the memory of past training items: what SMEC and SMRL +
    S-XBM add to their step's loss. `tables` holds the step's frozen inputs (queries then
    documents), the frozen full embeddings L2-normalised, `n_queries` and the `universe` of
    training items (:class:`smec.model.methods.base.Tables`)."""

    def __init__(self, tables, opts: Methods):
        self.inputs, self.n_queries = tables.inputs, tables.n_queries
        self.sims = Similarities(tables.full, tables.universe)
        self.memory = Memory(min(opts.xbm_capacity, len(tables.universe)), self.inputs.device)
        self.k, self.weight = opts.xbm_k, opts.xbm_weight
        self.active_steps = 0  # steps in which the term counted (a diagnostic)

    def __call__(
        self,
        z_batch: torch.Tensor,
        embed: Callable[[torch.Tensor], torch.Tensor],
        qi: torch.Tensor,
        di: torch.Tensor,
    ) -> torch.Tensor:
        """The term for the batch's queries `qi` and documents `di`, whose current compressed
        embeddings are `z_batch` (queries then documents); `embed` compresses the memory's
        frozen inputs with the current module (without gradient: the memory side is a
        constant). Then the batch enters the memory."""
        ids = torch.cat([qi, di + self.n_queries])  # rows of the joint frozen table
        term = z_batch.new_zeros(())
        if len(self.memory) > self.k:
            near, frozen = self.memory.neighbours(self.sims(ids, self.memory.ids), ids, self.k)
            with torch.no_grad():
                uniq, inverse = torch.unique(near, return_inverse=True)
                z_near = embed(self.inputs[uniq])[inverse]
            term = self.weight * loss(z_batch, z_near, frozen)
            self.active_steps += 1
        self.memory.push(ids)
        return term

    def state(self) -> dict:
        return {"memory": self.memory.ids.cpu(), "active_steps": self.active_steps}

    def load_state(self, state: dict) -> None:
        self.memory.ids = state["memory"].to(self.memory.ids.device)
        self.active_steps = state["active_steps"]
