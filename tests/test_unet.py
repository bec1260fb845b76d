"""The paper's network: layer count, channels, parameter count, the tile-size rule, the shapes traced without
running it (unet_shapes.layers)."""
import numpy as np
import pytest

from conftest import assert_close
import minunet as mu
from minunet.unet import check_input_size, output_size, valid_input_sizes
from minunet.unet_shapes import layers


def test_paper_network_has_23_conv_layers_and_31_million_parameters():
    net = mu.UNet()  # the paper's defaults
    shapes = {name: p.shape for name, p in net.named_parameters()}
    weights = [s for name, s in shapes.items() if name.endswith(".w")]
    assert len(weights) == 23  # 18 3x3 convs + 4 up-convs + the 1x1 output layer
    assert shapes["down.4.conv2.w"] == (1024, 1024, 3, 3)
    assert shapes["up_convs.0.w"] == (1024, 512, 2, 2)  # the up-convolutions (the paper's word)
    assert shapes["up.0.conv1.w"] == (512, 1024, 3, 3)  # the expanding path's levels, as down holds the contracting's
    assert shapes["head.w"] == (2, 64, 1, 1)
    # Per level: 2 convs (3x3, with bias); up-convs 2x2; head 1x1. Added up by hand from the paper's Fig. 1:
    assert net.n_parameters() == 31_030_658


def test_he_initialisation_std():
    net = mu.UNet(depth=2, base_channels=64)
    w = net.down[1].conv2.w.numpy()
    assert abs(w.std() - np.sqrt(2 / (128 * 9))) < 0.02 * np.sqrt(2 / (128 * 9))


def test_paper_tile_rule():
    assert output_size(572) == 388
    sizes = valid_input_sizes(5, "valid", 1, 700)
    assert sizes[0] == 188 and all(s % 16 == 12 for s in sizes)
    assert all(output_size(s) == s - 184 for s in sizes)
    assert valid_input_sizes(3, "same", 1, 20) == [4, 8, 12, 16, 20]


def test_invalid_tile_names_the_nearest_valid_sizes():
    with pytest.raises(ValueError, match=r"nearest valid sizes: \[556, 572\]"):
        check_input_size(570)
    for too_small in (100, 0, -4):  # not "every 2x2 pooling needs an even size": 100 is even
        with pytest.raises(ValueError, match=rf"input size {too_small} is too small .* the smallest valid size is 188"):
            check_input_size(too_small)


def test_small_network_maps_tile_to_output_and_rejects_a_bad_tile():
    net = mu.UNet(depth=3, base_channels=4, n_classes=3, seed=1)
    y = net(mu.Tensor(np.zeros((2, 1, 52, 52), np.float32)))
    assert y.shape == (2, 3, 12, 12) == (2, 3, net.output_size(52), net.output_size(52))
    with pytest.raises(ValueError, match="does not fit a depth-3 U-Net"):
        net(mu.Tensor(np.zeros((1, 1, 50, 50), np.float32)))


def test_same_padding_keeps_the_size():
    net = mu.UNet(depth=3, base_channels=2, padding="same")
    assert net(mu.Tensor(np.zeros((1, 1, 16, 24), np.float32))).shape == (1, 2, 16, 24)


def test_the_layer_trace_is_the_walk_of_the_network_that_runs():
    ops = layers(tile=44, batch=2, depth=2, base_channels=3, n_classes=4)
    assert [op["op"] for op in ops] == ["conv3x3", "conv3x3", "max_pool2x2", "conv3x3", "conv3x3", "dropout",
                                        "up_conv2x2", "center_crop", "concat", "conv3x3", "conv3x3", "conv1x1"]
    assert [op["name"] for op in ops][5:9] == ["down1.dropout", "up0.upconv", "up0.crop", "up0.concat"]
    net = mu.UNet(depth=2, base_channels=3, n_classes=4)
    y = net(mu.Tensor(np.zeros((2, 1, 44, 44), np.float32)))
    assert (ops[-1]["N"], ops[-1]["Co"], ops[-1]["Ho"], ops[-1]["Wo"]) == y.shape
    assert (ops[8]["Ci"], ops[8]["H"], ops[9]["Ci"]) == (6, 32, 6)  # 3 cropped + 3 up-convolved channels, 32x32
    taps = {"conv3x3": 9, "up_conv2x2": 4, "conv1x1": 1}
    traced = sorted((op["Ci"], op["Co"], taps[op["op"]]) for op in ops if op["op"] in taps)
    weights = sorted(((s[0], s[1]) if name.startswith("up_convs") else (s[1], s[0])) + (s[2] * s[3],)
                     for name, s in ((n, p.shape) for n, p in net.named_parameters() if n.endswith(".w")))
    assert traced == weights
    assert layers(16, depth=3, base_channels=2, padding="same")[-1]["Ho"] == 16
    with pytest.raises(ValueError, match="does not fit a depth-2 U-Net"):
        layers(tile=43, depth=2)


def test_state_dict_round_trip():
    a, b = mu.UNet(depth=2, base_channels=2, seed=1), mu.UNet(depth=2, base_channels=2, seed=2)
    b.load_state_dict(a.state_dict())
    for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert na == nb and np.array_equal(pa.numpy(), pb.numpy())
    with pytest.raises(ValueError, match="missing"):
        b.load_state_dict({})
