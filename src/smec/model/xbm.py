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

from smec.model import heads
from smec.params import Methods


class Memory:
    """Each of S members' FIFO queue of distinct items (numbers 0..n_items-1, the training
    items'), oldest first: an item seen again moves to the newest end, so no neighbour is
    counted twice. A queue is kept as the time each item last entered it (−1: not in it), so
    one push serves every member in a few operations."""

    def __init__(self, capacity: int, n_items: int, n_members: int = 1, device="cpu"):
        if capacity < 1:
            raise ValueError(f"memory capacity {capacity} must be positive")
        self.capacity, self.n_items = capacity, n_items
        self.stamp = torch.full((n_members, n_items), -1, dtype=torch.long, device=device)
        self.clock = 0

    def sizes(self) -> torch.Tensor:
        """(S,) how many items each member's queue holds."""
        return (self.stamp >= 0).sum(dim=1)

    def ids(self, member: int) -> torch.Tensor:
        """One member's queue, oldest first."""
        stamp = self.stamp[member]
        held = (stamp >= 0).nonzero().squeeze(1)
        return held[stamp[held].argsort()]

    def push(self, ids: torch.Tensor) -> None:
        """Enqueue each member's batch `ids` (S, M) in their order, each item at its first
        occurrence; past capacity the oldest fall out."""
        n = ids.shape[1]
        order = torch.arange(n, device=ids.device).expand_as(ids)
        first = self.stamp.new_full(self.stamp.shape, n).scatter_reduce(1, ids, order, "amin")
        self.stamp = torch.where(first < n, self.clock + first, self.stamp)
        self.clock += n
        if int(self.sizes().max()) > self.capacity:
            newest = self.stamp.topk(self.capacity, dim=1).values[:, -1:]  # stamps are distinct
            self.stamp = torch.where(self.stamp >= newest, self.stamp, -1)

    def state(self) -> list[torch.Tensor]:
        return [self.ids(s).cpu() for s in range(len(self.stamp))]

    def load_state(self, queues: list[torch.Tensor]) -> None:
        self.stamp.fill_(-1)
        for s, ids in enumerate(queues):
            ids = ids.to(self.stamp.device)
            self.stamp[s, ids] = torch.arange(len(ids), device=ids.device)
        self.clock = max((len(ids) for ids in queues), default=0)


class Similarities:
    """Frozen-space cosines among the items that can enter the memory (the training queries
    and documents: `universe`, their rows of the joint frozen table), computed once: the
    neighbour search then costs a lookup, not a product. An item's number is its place in
    `universe`; `local` maps a row of the table to it."""

    def __init__(self, full: torch.Tensor, universe: torch.Tensor):
        self.local = torch.full((len(full),), -1, dtype=torch.long, device=full.device)
        self.local[universe] = torch.arange(len(universe), device=full.device)
        self.universe = universe
        x = full[universe]
        self.table = x @ x.T
        self._nearest: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(len(a), len(b)) cosines of items `a` to items `b` (numbers)."""
        return self.table.index_select(0, a).index_select(1, b)

    def search(
        self, batch: torch.Tensor, candidates: torch.Tensor, k: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each batch item's k most similar `candidates` (a queue), itself excluded: their
        numbers (B, k) and frozen cosines (B, k). Needs more than k candidates."""
        sims = self(batch, candidates).masked_fill(batch[:, None] == candidates, float("-inf"))
        top = sims.topk(k, dim=1)
        return candidates[top.indices], top.values

    def nearest(self, a: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`search` among every item, for items `a` of any shape (numbers and cosines,
        (*a.shape, k)): the whole universe's top-k is found once, then looked up."""
        if k not in self._nearest:
            everyone = torch.arange(len(self.table), device=self.table.device)
            self._nearest[k] = self.search(everyone, everyone, k)
        ids, values = self._nearest[k]
        return ids[a], values[a]


def loss(z_batch: torch.Tensor, z_neighbours: torch.Tensor, frozen: torch.Tensor) -> torch.Tensor:
    """mean | cos(z_i, z_j) − cos(x_i, x_j) | over each item i and its neighbours j, per member.

    Shapes: z_batch (S, B, d), z_neighbours (S, B, K, d), frozen (S, B, K) the frozen-space
    cosines; returns (S,).
    """
    zb, zn = F.normalize(z_batch, dim=-1), F.normalize(z_neighbours, dim=-1)
    return (torch.einsum("sbd,sbkd->sbk", zb, zn) - frozen).abs().mean(dim=(1, 2))


class CrossBatchTerm:
    """λ · L_sxbm of a batch against the memory of past training items, per member: what SMEC
    and SMRL + S-XBM add to their step's loss. `tables` holds the step's frozen inputs (queries
    then documents, shared or per member), the frozen full embeddings L2-normalised,
    `n_queries` and the `universe` of training items
    (:class:`smec.model.methods.base.Tables`). Each member keeps its own memory (its batches
    come in its own order)."""

    def __init__(self, tables, opts: Methods, n_members: int):
        self.inputs, self.n_queries = tables.inputs, tables.n_queries
        self.sims = Similarities(tables.full, tables.universe)
        n_items = len(tables.universe)
        capacity = min(opts.xbm_capacity, n_items)
        self.memory = Memory(capacity, n_items, n_members, self.inputs.device)
        self.k, self.weight = opts.xbm_k, opts.xbm_weight
        self.active_steps = 0  # steps in which the term counted for every member (a diagnostic)

    def __call__(
        self,
        z_batch: torch.Tensor,
        embed: Callable[[torch.Tensor], torch.Tensor],
        qi: torch.Tensor,
        di: torch.Tensor,
    ) -> torch.Tensor:
        """The term, (S,), for the members' batches of queries `qi` and documents `di` (S, B),
        whose current compressed embeddings are `z_batch` (S, 2B, d), queries then documents;
        `embed` compresses (S, M, D) frozen inputs with the current module, without gradient:
        the memory side is a constant. Then each batch enters its member's memory."""
        items = self.sims.local[torch.cat([qi, di + self.n_queries], dim=1)]  # (S, 2B)
        term = z_batch.new_zeros(len(items))
        if int(self.memory.sizes().min()) > self.k:
            near, frozen = self.neighbours(items)
            with torch.no_grad():
                z_near = self._embed_neighbours(self.sims.universe[near], embed)
            term = self.weight * loss(z_batch, z_near, frozen)
            self.active_steps += 1
        self.memory.push(items)
        return term

    def neighbours(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The K nearest entries of each member's memory to its batch `items` (S, 2B):
        numbers and frozen cosines, (S, 2B, K). Once every memory holds every training item
        (after an epoch, when the capacity allows) they are the same at every step: looked up,
        not searched."""
        if bool((self.memory.sizes() == self.memory.n_items).all()):
            return self.sims.nearest(items, self.k)
        found = [self.sims.search(row, self.memory.ids(s), self.k) for s, row in enumerate(items)]
        return torch.stack([n for n, _ in found]), torch.stack([f for _, f in found])

    def _embed_neighbours(self, near: torch.Tensor, embed) -> torch.Tensor:
        """(S, 2B, K, d): each member's neighbours (rows of the frozen table) through the
        current module, each distinct item computed once (members padded to the same count
        with their first item)."""
        uniq = [torch.unique(n, return_inverse=True) for n in near]
        width = max(len(u) for u, _ in uniq)
        ids = torch.stack([torch.cat([u, u[:1].expand(width - len(u))]) for u, _ in uniq])
        z = embed(heads.rows_of(self.inputs, ids))  # (S, width, d)
        inverse = torch.stack([inv.flatten() for _, inv in uniq])  # (S, 2B·K)
        return heads.rows_of(z, inverse).view(*near.shape, z.shape[-1])

    def state(self) -> dict:
        return {"memories": self.memory.state(), "active": self.active_steps}

    def load_state(self, state: dict) -> None:
        self.memory.load_state(state["memories"])
        self.active_steps = state["active"]
