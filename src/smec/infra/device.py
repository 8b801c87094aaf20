"""Pick the torch device: `auto` means CUDA, then MPS, then the CPU."""

from __future__ import annotations

import torch

from smec.errors import SmecError


def resolve(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SmecError("device 'cuda' requested but torch sees no CUDA device")
    if name == "mps" and not torch.backends.mps.is_available():
        raise SmecError("device 'mps' requested but torch sees no MPS device")
    return torch.device(name)
