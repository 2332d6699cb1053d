"""GoodPointNet: shapes, the no-dustbin softmax, layer recipe, gradients."""
import numpy as np
import pytest
import torch

from goodpoint_ros.core.model import GoodPointNet, count_parameters, logits_to_prob
from goodpoint_ros.deploy.flops import network_flops


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return GoodPointNet().eval()


def test_output_shapes_and_ranges(net):
    x = torch.rand(2, 1, 64, 96)
    out = net(x)
    assert out["prob"].shape == (2, 64, 96)
    assert out["desc"].shape == (2, 256, 8, 12)
    assert out["prob"].dtype == torch.float32
    # no dustbin: every 8x8 cell of the confidence map is a softmax, sums to 1
    cells = out["prob"].reshape(2, 8, 8, 12, 8).sum(dim=(2, 4))
    torch.testing.assert_close(cells, torch.ones_like(cells), atol=1e-5, rtol=0)
    norms = out["desc"].norm(dim=1)
    torch.testing.assert_close(norms, torch.ones_like(norms), atol=1e-5, rtol=0)


def test_depth_to_space_channel_order():
    # channel c = dy*8 + dx lands at pixel (8i+dy, 8j+dx) of cell (i, j)
    logits = torch.full((1, 64, 2, 3), -30.0)
    logits[0, 8 * 5 + 2, 1, 2] = 30.0      # dy=5, dx=2 in cell (1, 2)
    prob = logits_to_prob(logits)[0]
    y, x = np.unravel_index(int(prob.argmax()), prob.shape)
    assert (y, x) == (8 + 5, 16 + 2)


def test_flat_cell_scores_one_sixty_fourth():
    prob = logits_to_prob(torch.zeros(1, 64, 1, 1))
    torch.testing.assert_close(prob, torch.full_like(prob, 1 / 64))


def test_layer_recipe_and_parameter_count(net):
    # SuperPoint's parameter count minus the dustbin (65 → 64 channels) plus BN params
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 12
    leaky = [m for m in net.modules() if isinstance(m, torch.nn.LeakyReLU)]
    assert len(leaky) == 11 and all(m.negative_slope == 0.01 for m in leaky)
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 11      # every conv but the descriptor's final 1x1
    assert net.desc_b.out_channels == 256 and net.det_b[0].out_channels == 64
    assert 1.2e6 < count_parameters(net) < 1.4e6


def test_rejects_bad_input(net):
    with pytest.raises(ValueError, match="multiples of 8"):
        net(torch.rand(1, 1, 30, 40))
    with pytest.raises(ValueError, match="grayscale"):
        net(torch.rand(1, 3, 32, 32))


def test_gradients_flow_to_every_parameter():
    torch.manual_seed(1)
    net = GoodPointNet().train()
    out = net(torch.rand(2, 1, 32, 32))
    loss = out["prob"].square().mean() + out["desc"][:, :, 0, 0].sum()
    loss.backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


def test_flops_match_the_published_cost():
    assert network_flops(240, 320) / 1e9 == pytest.approx(13.0, abs=0.05)
    assert network_flops(480, 640) / 1e9 == pytest.approx(52.1, abs=0.05)
