"""The learning-free baselines of the registry: truncation and PCA."""

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
