import mypkg
import torch


def test_projection_keeps_leading_axes():
    layer = mypkg.Projection(6, 4)
    assert layer(torch.randn(3, 6)).shape == (3, 4)
    assert layer(torch.randn(2, 5, 6)).shape == (2, 5, 4)
    assert mypkg.Projection(8, 3)(torch.randn(7, 8)).shape == (7, 3)


def test_encoder_pools_over_time():
    torch.manual_seed(0)
    enc = mypkg.Encoder(vocab=11, dim=8)
    for batch, time in ((2, 5), (3, 7)):
        ids = torch.randint(0, 11, (batch, time))
        mask = torch.rand(batch, time) > 0.3
        pooled, states = enc(ids, mask)
        assert pooled.shape == (batch, 8) and states.shape == (batch, time, 8)
    pooled, _ = enc(torch.randint(0, 11, (4, 6)))
    assert pooled.shape == (4, 8)


def test_distances_and_mask():
    d = mypkg.pairwise_distances(torch.randn(4, 3), torch.randn(6, 3))
    assert d.shape == (4, 6)
    assert mypkg.pairwise_distances(torch.randn(2, 3), torch.randn(5, 3)).shape == (2, 5)
    assert mypkg.causal_mask(4).sum() == 10
    assert mypkg.causal_mask(6).shape == (6, 6)


def test_total_loss():
    losses = {"ce": torch.tensor(2.0), "aux": torch.tensor(0.5)}
    assert mypkg.total_loss(losses).item() == 2.5
    assert mypkg.total_loss(losses, {"ce": 1.0, "aux": 2.0}).item() == 3.0
