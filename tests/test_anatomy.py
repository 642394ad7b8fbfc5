"""dlcourse.anatomy against hand counts, torchvision's published ResNet-18 figures and
empirical receptive fields measured on real random-weight networks."""
import pytest
import torch
import torchvision
from torch import nn

from dlcourse.anatomy import count_flops, count_macs, count_parameters, layer_table, receptive_field, summary


def small_net():
    # on (N, 3, 8, 8): conv -> (N, 8, 6, 6) -> conv -> (N, 16, 4, 4) -> linear 256 -> 10
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 16, 3, bias=False), nn.Flatten(),
                         nn.Linear(16 * 4 * 4, 10))


def lenet():
    return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.Sigmoid(), nn.AvgPool2d(2),
                         nn.Conv2d(6, 16, 5), nn.Sigmoid(), nn.AvgPool2d(2), nn.Flatten(),
                         nn.Linear(400, 120), nn.Sigmoid(), nn.Linear(120, 84), nn.Sigmoid(), nn.Linear(84, 10))


@pytest.fixture(scope="module")
def resnet18_meta():
    with torch.device("meta"):                  # shapes only: no memory, no compute
        return torchvision.models.resnet18()


# ------------------------------------------------------------------------------------------------
# Parameters
# ------------------------------------------------------------------------------------------------

def test_count_parameters_matches_hand_count():
    net = small_net()
    conv1 = 8 * 3 * 3 * 3 + 8            # weights C_out * C_in * K * K + biases
    conv2 = 16 * 8 * 3 * 3               # no bias
    fc = 256 * 10 + 10
    assert count_parameters(net) == conv1 + conv2 + fc == 3946
    net[0].requires_grad_(False)
    assert count_parameters(net, trainable_only=True) == conv2 + fc
    assert count_parameters(net) == 3946


def test_shared_layer_is_counted_once():
    shared = nn.Linear(4, 4)
    assert count_parameters(nn.Sequential(shared, nn.ReLU(), shared)) == 20


def test_lazy_layer_asks_for_a_forward_pass():
    with pytest.raises(ValueError, match="forward pass"):
        count_parameters(nn.Sequential(nn.LazyLinear(3)))


def test_resnet18_parameters_and_macs_match_torchvision(resnet18_meta):
    net = resnet18_meta
    assert count_parameters(net) == 11_689_512                       # torchvision's model table
    macs = count_macs(net, (1, 3, 224, 224))
    assert round(macs / 1e9, 2) == 1.81                              # torchvision's "GFLOPS" = G multiply-adds
    assert count_flops(net, (1, 3, 224, 224)) == 2 * macs            # FlopCounterMode: 1 multiply-add = 2 FLOPs
    for p in net.parameters():
        p.requires_grad_(False)
    net.fc.requires_grad_(True)
    assert count_parameters(net, trainable_only=True) == 512 * 1000 + 1000


# ------------------------------------------------------------------------------------------------
# FLOPs and MACs
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("layer, shape, macs", [
    # MACs = N * C_out * H_out * W_out * C_in * K * K
    (nn.Conv2d(3, 8, 3, padding=1), (2, 3, 10, 10), 2 * 8 * 10 * 10 * 3 * 3 * 3),
    (nn.Conv2d(4, 6, 3, stride=2), (1, 4, 9, 9), 1 * 6 * 4 * 4 * 4 * 3 * 3),
    (nn.Conv2d(4, 6, (1, 3), bias=False), (1, 4, 5, 5), 6 * 5 * 3 * 4 * 1 * 3),
    # MACs = N * D_in * D_out
    (nn.Linear(20, 30), (4, 20), 4 * 20 * 30),
])
def test_flops_of_single_layers_match_the_formula(layer, shape, macs):
    assert count_macs(layer, shape) == macs
    assert count_flops(layer, shape) == 2 * macs
    assert count_flops(layer, torch.randn(shape)) == 2 * macs           # a tensor works like its shape


def test_flop_count_leaves_the_network_unchanged():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Dropout(0.5))
    net.train()
    net[2].eval()                                                       # a mixed mode must survive too
    before = {k: v.clone() for k, v in net.state_dict().items()}
    count_flops(net, (4, 1, 6, 6))
    layer_table(net, (4, 1, 6, 6))
    assert [m.training for m in net] == [True, True, False] and net.training
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k                             # BN running stats untouched
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())


def test_bad_shape_is_a_clear_error():
    with pytest.raises(ValueError, match="shape like"):
        count_flops(small_net(), (1, 3, "8", 8))


# ------------------------------------------------------------------------------------------------
# Layer table and summary
# ------------------------------------------------------------------------------------------------

def test_layer_table_shapes_params_and_macs_of_lenet():
    net = lenet()
    rows = layer_table(net, (2, 1, 28, 28))
    X = torch.zeros(2, 1, 28, 28)
    for row, (name, layer) in zip(rows, net.named_children(), strict=True):
        X = layer(X)                                                   # oracle: run the layers one by one
        assert (row["name"], row["type"], row["output_shape"]) == (name, type(layer).__name__, tuple(X.shape))
        assert row["params"] == sum(p.numel() for p in layer.parameters())
    assert [r["params"] for r in rows if r["params"]] == [156, 2416, 48120, 10164, 850]   # by hand
    conv1, conv2 = rows[0]["macs"], rows[3]["macs"]
    assert conv1 == 2 * 6 * 28 * 28 * 1 * 5 * 5 and conv2 == 2 * 16 * 10 * 10 * 6 * 5 * 5
    assert rows[7]["macs"] == 2 * 400 * 120 and rows[1]["macs"] == 0
    assert sum(r["params"] for r in rows) == count_parameters(net) == 61706
    assert sum(r["macs"] for r in rows) == count_macs(net, (2, 1, 28, 28))


def test_layer_table_lists_every_call_of_a_reused_layer_once_for_params():
    shared = nn.Linear(4, 4)
    rows = layer_table(nn.Sequential(shared, nn.ReLU(), shared), (3, 4))
    assert [(r["name"], r["params"], r["macs"]) for r in rows] == [("0", 20, 48), ("1", 0, 0), ("0", 0, 48)]


def test_summary_prints_layers_and_totals():
    text = summary(lenet(), (1, 1, 28, 28))
    lines = text.splitlines()
    assert lines[0].split() == ["Layer", "(type)", "Output", "shape", "Params", "MACs"]
    assert "0 (Conv2d)" in lines[2] and "(1, 6, 28, 28)" in lines[2] and "156" in lines[2]
    assert "Total params: 61,706 (trainable: 61,706)" in text
    macs = count_macs(lenet(), (1, 1, 28, 28))
    assert f"Total MACs: {macs:,} = {2 * macs:,} FLOPs" in text
    assert "Input shape: (1, 1, 28, 28)" in text


# ------------------------------------------------------------------------------------------------
# Receptive field
# ------------------------------------------------------------------------------------------------

def test_three_3x3_convolutions_see_7_pixels():
    assert receptive_field([(3, 1)] * 3) == 7
    convs = nn.Sequential(*[nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
                            for _ in range(3)])
    assert receptive_field(convs) == 7 == receptive_field([(7, 1)])


@pytest.mark.parametrize("layers, expected", [
    ([(3, 1), (2, 2), (3, 1)], 8),              # 1 + 2 = 3; + 1 = 4 (jump 2); + 2 * 2 = 8
    ([(3, 1, 2)], 5),                           # dilation 2: 1 + 2 * 2
    ([(11, 4), (3, 2), (5, 1)], 51),            # AlexNet's start: 11; + 2 * 4 = 19 (jump 8); + 4 * 8 = 51
    ([((3, 5), 1)], (3, 5)),                    # height and width differ
    ([(1, 1)], 1),
])
def test_receptive_field_formula(layers, expected):
    assert receptive_field(layers) == expected


def test_receptive_field_rejects_layers_it_cannot_reason_about():
    with pytest.raises(ValueError, match="cannot handle"):
        receptive_field(nn.Sequential(nn.Conv2d(1, 1, 3), nn.AdaptiveAvgPool2d(1)))
    with pytest.raises(ValueError, match="positive ints"):
        receptive_field([(0, 1)])


def _extent(mask):
    """Number of rows and columns from the first to the last True entry of a 2-D mask."""
    rows = mask.any(1).nonzero()
    cols = mask.any(0).nonzero()
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


def _gradient_extent(net, size):
    """Backprop from the centre output unit to the input; measure the non-zero region."""
    X = torch.randn(1, 1, size, size, requires_grad=True)
    Y = net(X)                                                           # (1, 1, h, w)
    Y[0, 0, Y.shape[2] // 2, Y.shape[3] // 2].backward()
    return _extent(X.grad[0, 0] != 0)


def _seeded(net):
    torch.manual_seed(0)
    for p in net.parameters():
        nn.init.normal_(p)
    return net


def test_receptive_field_equals_the_gradient_footprint():
    """Linear layers with random weights: every input pixel inside the field gets a gradient."""
    net = _seeded(nn.Sequential(nn.Conv2d(1, 2, 3), nn.AvgPool2d(2), nn.Conv2d(2, 2, 3, dilation=2),
                                nn.Conv2d(2, 1, 3, stride=2), nn.Conv2d(1, 1, (3, 5))))
    assert _gradient_extent(net, 80) == receptive_field(net) == (24, 32)
    stack = _seeded(nn.Sequential(*[nn.Conv2d(1, 1, 3) for _ in range(3)]))
    assert _gradient_extent(stack, 15) == (7, 7)


def test_receptive_field_with_max_pooling_by_perturbation():
    """Max pooling routes the gradient through one pixel only, so probe it the other way round:
    a large value at an input pixel changes the centre output exactly when the pixel is inside
    the receptive field (positive weights and inputs keep every ReLU open)."""
    net = nn.Sequential(nn.Conv2d(1, 1, 7, stride=2), nn.ReLU(), nn.MaxPool2d(3, stride=2),
                        nn.Conv2d(1, 1, 3), nn.ReLU(), nn.MaxPool2d(2, dilation=2))
    torch.manual_seed(0)
    for p in net.parameters():
        p.data.uniform_(0.1, 1.0)
    size = 61
    base = torch.rand(1, 1, size, size)
    probes = base.repeat(size, 1, 1, 1)                                  # one image per probed row
    probes[torch.arange(size), 0, torch.arange(size), size // 2] = 100.0  # along the centre column
    with torch.no_grad():
        Y0, Y = net(base), net(probes)
        centre = (Y0.shape[2] // 2, Y0.shape[3] // 2)
        # a probe inside the field moves the output by a lot; outside it only rounding differs (the
        # batched convolution may add in another order than the single-image one)
        changed = (Y[:, 0, centre[0], centre[1]] - Y0[0, 0, centre[0], centre[1]]).abs() > 1e-3
    measured = int(changed.nonzero().max() - changed.nonzero().min() + 1)
    # conv 7/2: 7; pool 3/2: 7 + 2*2 = 11; conv 3: 11 + 2*4 = 19; pool 2 dilation 2: 19 + 1*2*4 = 27
    assert measured == receptive_field(net) == 27
