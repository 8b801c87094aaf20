"""`heads.rows_of`, the row lookup of every training step, against a plain loop over members."""

import pytest
import torch

from smec.model import heads


def looped(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Member s's rows idx[s] of its table (a shared table is every member's), one at a time."""
    table = (lambda s: x) if x.dim() == 2 else (lambda s: x[s])
    return torch.stack([torch.stack([table(s)[i] for i in row]) for s, row in enumerate(idx)])


TABLES = {
    "shared": lambda g: torch.randn(7, 5, generator=g),
    "per member": lambda g: torch.randn(3, 7, 5, generator=g),
    "shared, viewed per member": lambda g: heads.members(torch.randn(7, 5, generator=g), 3),
    "per member, transposed layout": lambda g: torch.randn(3, 5, 7, generator=g).transpose(1, 2),
}


@pytest.mark.parametrize("kind", TABLES)
def test_rows_of_copies_each_members_rows_as_a_loop_over_members_does(kind):
    g = torch.Generator().manual_seed(0)
    x = TABLES[kind](g)
    idx = torch.randint(0, 7, (3, 11), generator=g)
    got = heads.rows_of(x, idx)
    assert got.shape == (3, 11, 5)
    assert torch.equal(got, looped(x, idx))


def test_rows_of_sends_each_rows_gradient_back_to_the_row_it_copied():
    x = torch.randn(2, 6, 4, requires_grad=True)
    idx = torch.tensor([[0, 0, 5], [3, 1, 3]])
    weights = torch.randn(2, 3, 4)
    (heads.rows_of(x, idx) * weights).sum().backward()
    expected = torch.zeros(2, 6, 4)
    for s in range(2):
        for j, i in enumerate(idx[s]):
            expected[s, i] += weights[s, j]
    assert torch.allclose(x.grad, expected)


def test_a_768_d_encoders_chain_halves_from_384_and_a_chain_that_does_not_fit_is_refused():
    from smec import params
    from smec.errors import SmecError

    dims = params.Params().at(768).compare.dims
    assert heads.chain_dims(768, dims) == [(768, 384), (384, 192), (192, 96)]
    with pytest.raises(SmecError, match=r"the first must be a width in \[1, D=384\]"):
        heads.chain_dims(384, [512, 256])
    with pytest.raises(SmecError, match="each must be half the one before"):
        heads.chain_dims(384, [192, 64])
