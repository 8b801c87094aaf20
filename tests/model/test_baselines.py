"""The learning-free baselines of the registry: truncation, PCA, a random projection."""

import torch

from smec.model import methods


def test_truncation_keeps_the_first_d_coordinates():
    x = torch.randn(5, 6)
    assert torch.equal(methods.get("truncate").fit(x, seed=0)(x, 2), x[:, :2])


def test_pca_orders_decorrelated_components_by_variance_with_deterministic_signs():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(200, 6, generator=gen) * torch.tensor([5.0, 3.0, 2.0, 1.0, 0.5, 0.1])
    pca = methods.get("pca").fit(x, seed=0)
    z = pca(x, 6)
    var = z.var(dim=0)
    assert torch.all(var[:-1] >= var[1:])  # components in order of explained variance
    assert torch.allclose(z.T @ z / 199, torch.diag(var), atol=1e-3)  # decorrelated
    assert torch.allclose(pca(x, 2), z[:, :2])
    again = methods.get("pca").fit(x, seed=1).components
    assert torch.equal(again, pca.components)  # deterministic signs


def test_whitened_pca_gives_the_corpus_unit_variance_in_every_kept_direction():
    """Planted scales 5 … 0.1: plain PCA keeps them, whitening makes the corpus covariance of the
    projection the identity, and its directions are PCA's (each column a rescaled PCA column)."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(200, 6, generator=gen) * torch.tensor([5.0, 3.0, 2.0, 1.0, 0.5, 0.1])
    white = methods.get("pca_whiten").fit(x, seed=0)
    z = white(x, 4)
    assert torch.allclose(z.T @ z / 199, torch.eye(4), atol=1e-4)
    plain = methods.get("pca").fit(x, seed=0)(x, 4)
    ratio = plain / z
    assert torch.allclose(ratio, ratio[0].expand_as(ratio), rtol=1e-4)  # same directions
    assert torch.all(ratio[0, :-1] > ratio[0, 1:])  # the widest direction shrunk the most


def test_a_random_projection_is_drawn_from_its_seed_and_nested_across_widths():
    x = torch.randn(50, 16)
    rp = methods.get("random_projection")
    a, again, other = rp.fit(x, seed=0), rp.fit(x, seed=0), rp.fit(x, seed=1)
    assert torch.equal(a(x, 8), again(x, 8)) and not torch.equal(a(x, 8), other(x, 8))
    torch.testing.assert_close(a(x, 4) * 2, a(x, 8)[:, :4] * 8**0.5)  # rows nest, scale 1/√d
    assert rp.seeded and not methods.get("pca").seeded


def test_every_baseline_yields_every_width_and_a_seeded_one_every_seed():
    x = torch.randn(40, 8)
    labels = [lab for lab, _, _ in methods.baselines(x, x, [4, 2], seeds=3)]
    per = {(lab["method"], lab["seed"]) for lab in labels}
    assert {s for m, s in per if m == "random_projection"} == {0, 1, 2}
    assert {s for m, s in per if m in ("truncate", "pca")} == {0}
    assert {lab["dim"] for lab in labels} == {4, 2}
