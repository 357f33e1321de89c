"""The DCGAN family's generator and discriminator: layouts, upsampling modes, norms, tricks, init."""

from __future__ import annotations

import copy
import importlib.util
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from gankit.config import build_config
from gankit.errors import ConfigError
from gankit.models import Discriminator, Generator, build_discriminator, build_generator, init_weights, layout
from gankit.models.layers import (ColorPicker, Conv2d, MinibatchDiscrimination, MinibatchStdDev, SelfModulatedBatchNorm, input_gradients_only,
                                  thin_conv_transpose2d, upsample_conv2d, use_gemm_wgrad, use_thin_conv)

TINY = {"nz": 16, "ngf": 8}
TINY_D = {"ndf": 8}
UPSAMPLES = ("convtranspose", "upsample", "colorpicker")


def _reference():
    """benchmarks/reference_dcgan.py: the classic DCGAN written from the paper, our layout oracle."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "reference_dcgan.py"
    spec = importlib.util.spec_from_file_location("reference_dcgan", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# ---------------------------------------------------------------- layout and shapes

@pytest.mark.parametrize("resolution,expected", [(16, (4, 2)), (64, (4, 4)), (100, (7, 4)), (256, (4, 6)),
                                                 (300, (5, 6)), (1024, (4, 8))])
def test_layout_base_between_4_and_7(resolution, expected):
    base, n = layout(resolution)
    assert (base, n) == expected
    assert base * 2**n >= resolution > (base - 1) * 2**n  # G makes just enough pixels, then crops


@pytest.mark.parametrize("resolution", [16, 32, 64, 100])
@pytest.mark.parametrize("upsample", UPSAMPLES)
def test_shapes_for_every_resolution_and_upsample(resolution, upsample):
    torch.manual_seed(0)
    G = Generator(resolution, upsample=upsample, **TINY)
    D = Discriminator(resolution, **TINY_D)
    x = G(torch.randn(3, 16))
    assert x.shape == (3, 3, resolution, resolution)
    assert x.min() >= -1 and x.max() <= 1
    base, _ = layout(resolution)
    assert D.features(x).shape[-2:] == (base, base)  # D halves down to G's base size, the head covers it
    adv, aux = D(x)
    assert adv.shape == (3,) and aux is None


@pytest.mark.parametrize("resolution", [16, 64, 75, 300])
def test_kernel_5_is_the_dcgan_papers_layout_at_any_size(resolution):
    """5x5 stride-2 layers (DCGAN paper) in place of 4x4: G doubles and D halves (ceil) exactly as with 4x4, so
    the same base map and crop."""
    G, D = Generator(resolution, kernel=5, **TINY), Discriminator(resolution, kernel=5, **TINY_D)
    strided = [m for m in [*G.modules(), *D.modules()] if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))
               and m.stride == (2, 2)]
    _, n = layout(resolution)
    assert len(strided) == 2 * n and all(m.kernel_size == (5, 5) for m in strided)
    sizes = []
    for m in G.net:
        if isinstance(m, nn.ConvTranspose2d):
            m.register_forward_hook(lambda mod, inp, out: sizes.append((inp[0].shape[-1], out.shape[-1])))
    x = G(torch.randn(2, 16))
    assert x.shape == (2, 3, resolution, resolution)
    assert all(o == 2 * i for i, o in sizes[1:])  # (the first layer makes the base map from z)
    base, _ = layout(resolution)
    assert D.features(x).shape[-2:] == (base, base)
    plain = Generator(resolution, **TINY)
    assert [k for k, _ in G.state_dict().items()] == [k for k, _ in plain.state_dict().items()]


@pytest.mark.slow
def test_shapes_300px_hands():
    G = Generator(300, upsample="colorpicker", channels=3, **TINY)
    D = Discriminator(300, mbd_features=4, **TINY_D)
    x = G(torch.randn(2, 16))
    assert x.shape == (2, 3, 300, 300)
    assert D.features(x).shape[-2:] == (5, 5)
    assert D(x)[0].shape == (2,)


def test_power_of_two_is_the_classic_dcgan():
    assert _n_params(Generator(64)) == 3_576_704 and _n_params(Discriminator(64)) == 2_765_568
    ref = _reference()
    for res in (16, 32, 128):
        G, D = Generator(res, ngf=8, max_channels=4096), Discriminator(res, ndf=8, max_channels=4096)
        ref_g, ref_d = ref._generator(100, 8, 3, res), ref._discriminator(8, 3, res)
        # a classic checkpoint loads as is (same module indices and shapes), so older runs keep working
        G.load_state_dict({f"net.{k}": v for k, v in ref_g.state_dict().items()})
        d_state = list(ref_d.state_dict().items())
        D.load_state_dict({**{f"features.{k}": v for k, v in d_state[:-1]}, "head.weight": d_state[-1][1]})
        x = torch.randn(2, 100)
        ref_g.eval()
        G.eval()
        assert torch.equal(G(x), ref_g(x[:, :, None, None]))


# ---------------------------------------------------------------- im2col-GEMM weight gradients (CPU speed)

def test_gemm_weight_gradient_switch():
    G, D = Generator(64, **TINY), Discriminator(64, **TINY_D)
    convs = [m for m in [*G.modules(), *D.modules()] if hasattr(m, "gemm_wgrad")]
    assert len(convs) == 10 and not any(m.gemm_wgrad for m in convs)  # off until asked
    use_gemm_wgrad(G, True)
    use_gemm_wgrad(D, True)
    assert all(m.gemm_wgrad for m in convs)
    use_gemm_wgrad(D, False)
    assert not any(getattr(m, "gemm_wgrad", False) for m in D.modules())


@pytest.mark.parametrize("transposed", [False, True])
def test_a_layer_times_both_weight_gradients_once_and_keeps_the_faster(transposed, monkeypatch):
    """With gemm_wgrad, a layer times oneDNN's weight gradient and the GEMM twice each at the first call of a
    shape, then computes with the faster one for the rest of the process; both give the same gradients. Under
    deterministic algorithms nothing is timed: the GEMM on maps of at most GEMM_MAP_MAX px, oneDNN on larger."""
    from gankit.models import layers

    torch.manual_seed(0)
    conv = (layers.ConvTranspose2d(6, 5, 4, 2, 1, bias=False) if transposed
            else layers.Conv2d(6, 5, 4, 2, 1, bias=False)).to(memory_format=torch.channels_last)
    use_gemm_wgrad(conv, True)
    calls = []
    real_gemm = layers.conv2d_weight_grad

    def gemm(*args):
        calls.append("gemm")
        return real_gemm(*args)

    def grad_w(x, wins=None):
        layers._WGRAD_GEMM_WINS.clear()
        if wins is not None:  # as if timed: no timing calls
            monkeypatch.setattr(layers, "_gemm_wgrad_wins", lambda key, onednn, gemm_, small_map: wins)
        conv.weight.grad = None
        conv(x).square().sum().backward()
        monkeypatch.setattr(layers, "_gemm_wgrad_wins", real_wins)
        return conv.weight.grad.clone()

    real_wins = layers._gemm_wgrad_wins
    monkeypatch.setattr(layers, "conv2d_weight_grad", gemm)
    x = torch.randn(3, 6, 8, 8).to(memory_format=torch.channels_last)
    tuned = grad_w(x)
    (gemm_won,) = layers._WGRAD_GEMM_WINS.values()
    assert calls == ["gemm"] * (2 + gemm_won)
    calls.clear()
    conv(x).square().sum().backward()  # the same shapes again: no timing
    assert calls == ["gemm"] * gemm_won and len(layers._WGRAD_GEMM_WINS) == 1
    by_gemm, by_onednn = grad_w(x, True), grad_w(x, False)
    torch.testing.assert_close(by_gemm, by_onednn, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(tuned, by_onednn, rtol=1e-5, atol=1e-5)
    torch.use_deterministic_algorithms(True)
    try:
        for side, method in ((8, "gemm"), (2 * layers.GEMM_MAP_MAX + 4, None)):  # small and large maps
            x = torch.randn(3, 6, side, side).to(memory_format=torch.channels_last)
            calls.clear()
            grad_w(x)
            assert calls == ([method] if method else []) and not layers._WGRAD_GEMM_WINS
    finally:
        torch.use_deterministic_algorithms(False)


@pytest.mark.parametrize("chunk", ["images", "rows"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_gemm_weight_gradient_in_chunks_is_the_whole_ones(chunk, dtype, monkeypatch):
    """Past `COLS_CHUNK` elements, the im2col matrix is built and multiplied a few images, or a few output rows of
    one image, at a time; the sum is the gradient of the whole (in bf16: summed in fp32, as close to the fp32
    gradient as the one-GEMM bf16 gradient is)."""
    from gankit.models import layers

    torch.manual_seed(0)
    x = torch.randn(5, 6, 11, 11).to(memory_format=torch.channels_last)  # odd map: 11 -> 5 (4x4, stride 2, pad 1)
    g = torch.randn(5, 7, 5, 5).to(memory_format=torch.channels_last)
    exact = layers.conv2d_weight_grad(x.double(), g.double(), (4, 4), (2, 2), (1, 1))
    whole = layers.conv2d_weight_grad(x.to(dtype), g.to(dtype), (4, 4), (2, 2), (1, 1))
    per_row = 5 * 16 * 6
    monkeypatch.setattr(layers, "COLS_CHUNK", 2 * 5 * per_row if chunk == "images" else 2 * per_row)
    parts = []
    real_cols = layers._cols_matrix
    monkeypatch.setattr(layers, "_cols_matrix", lambda p: parts.append(p.shape[:2]) or real_cols(p))
    with torch.no_grad():
        chunked = layers.conv2d_weight_grad(x.to(dtype), g.to(dtype), (4, 4), (2, 2), (1, 1))
    assert parts == ([(2, 5), (2, 5), (1, 5)] if chunk == "images" else [(1, 2), (1, 2), (1, 1)] * 5)
    assert chunked.dtype == dtype and chunked.shape == (7, 6, 4, 4)
    if dtype == torch.float32:
        torch.testing.assert_close(chunked, exact.float(), rtol=1e-5, atol=1e-5)
    else:
        assert (chunked.double() - exact).norm() <= 1.5 * (whole.double() - exact).norm() + 1e-3 * exact.norm()


@pytest.mark.parametrize("channels_last", [True, False])
def test_the_first_layer_as_a_matrix_product_keeps_the_models_layout(channels_last):
    """G's 1x1 -> 4x4 layer as z @ W gives its map in the weights' layout: a channels-last map met by an NCHW
    one in ReLU's backward runs a slow mixed-layout kernel."""
    G = Generator(64, **TINY)
    if channels_last:
        G = G.to(memory_format=torch.channels_last)
    use_gemm_wgrad(G, True)
    first = next(m for m in G.modules() if getattr(m, "gemm_wgrad", False))
    z = torch.randn(4, TINY["nz"], 1, 1, requires_grad=True)
    y = first(z)
    layout_ = torch.channels_last if channels_last else torch.contiguous_format
    assert y.is_contiguous(memory_format=layout_) and not (channels_last and y.is_contiguous())
    use_gemm_wgrad(G, False)
    torch.testing.assert_close(y, first(z), rtol=0, atol=1e-6)  # oneDNN's transposed convolution, same map

def _grads(net, x, amp, penalty):
    """Output, input gradient and every parameter gradient of a mean score (+ a WGAN-GP-like penalty)."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        out = net(x)
        out, aux = out if isinstance(out, tuple) else (out, None)
        loss = out.float().mean() + (aux.float().square().mean() if aux is not None else 0)  # ACGAN's class logits too
        if penalty:  # double backward through every layer, as the WGAN-GP gradient penalty does
            with input_gradients_only():  # as gankit.losses.gradient_penalty asks for it
                gx, = torch.autograd.grad(out.float().sum(), x, create_graph=True)
            loss = loss + (gx.float().flatten(1).norm(dim=1) - 1).pow(2).mean()
    params = [p for p in net.parameters() if p.requires_grad]
    return [out.detach().float(), *[g.float() for g in torch.autograd.grad(loss, [x, *params])]]


@pytest.mark.parametrize("amp", [False, True], ids=["fp32", "bf16"])
@pytest.mark.parametrize("net", ["G", "D", "D_sn_100px", "D_acgan_100px", "G_bias_100px", "G_gray", "D_gray_300px",
                                 "G_upsample", "G_upsample_gray_100px", "G_k5", "D_k5_75px"])
def test_cpu_paths_give_onednns_outputs_and_gradients(net, amp):
    """The GEMM weight gradient, the thin RGB layers and D's last layers as matrix products (`whole_map_conv2d`;
    score and ACGAN's class logits): same outputs and gradients as the plain convolutions
    (WGAN-GP's double backward included) in fp32 to rounding; under bf16 autocast as close to the fp32 ones as
    the plain convolutions' are (the summed upsample kernels round differently); for even and odd (padded)
    layouts, one or three image channels, and 5x5 kernels (no thin layer then)."""
    torch.manual_seed(0)
    res = 300 if "300px" in net else 100 if "100px" in net else 75 if "75px" in net else 64
    kernel = 5 if "k5" in net else 4
    channels = 1 if "gray" in net else 3
    if net.startswith("G"):
        plain = Generator(res, nz=16, ngf=8, channels=channels, norm="none" if "bias" in net else "batch",
                          upsample="upsample" if "upsample" in net else "convtranspose", kernel=kernel)
        x = torch.randn(4, 16, requires_grad=True)
    else:
        plain = Discriminator(res, ndf=8, channels=channels, norm="none", spectral_norm="sn" in net,
                              num_classes=5 if "acgan" in net else 0, kernel=kernel)
        x = torch.randn(4, channels, res, res).to(memory_format=torch.channels_last).requires_grad_()
    plain = plain.to(memory_format=torch.channels_last)
    fast = copy.deepcopy(plain)
    use_gemm_wgrad(fast, True)
    use_thin_conv(fast, True)
    # G's output layer (transposed, or upsampled and its upsample deferred) / D's input layer
    assert sum(getattr(m, "thin", False) or getattr(m, "upsampled_input", False) for m in fast.modules()) == (kernel == 4)
    assert sum(getattr(m, "deferred", False) for m in fast.modules()) == ("upsample" in net)
    untrained = copy.deepcopy(plain).eval(), copy.deepcopy(fast).eval()  # for the no-gradient forward below
    penalty = net.startswith("D")
    exact = _grads(plain, x, False, penalty)
    expected, got = (_grads(plain, x, True, penalty), _grads(fast, x, True, penalty)) if amp else (exact, _grads(fast, x, False, penalty))
    for i, (a, b, e) in enumerate(zip(got, expected, exact)):
        if amp:  # bf16 error of the fast paths against fp32: not above the plain convolutions' (+ a little)
            assert (a - e).norm() <= 1.1 * (b - e).norm() + 5e-3 * e.norm() + 1e-8, f"tensor {i}"
        else:
            assert (a - b).norm() <= 1e-5 * b.norm() + 1e-8, f"tensor {i}: {(a - b).norm() / b.norm():.2e}"
    assert expected[2].norm() > 0  # the first parameter got a gradient at all
    if net.startswith("G"):  # sampling (no gradients) takes the thin forward too
        with torch.no_grad():
            torch.testing.assert_close(untrained[1](x), untrained[0](x), rtol=0, atol=1e-5)


def test_onednn_is_never_asked_for_gradients_it_need_not_compute():
    """oneDNN computes a bias gradient with its weight gradient: asked for the bias without the weight (the GEMM
    weight gradient's layers, with a bias when D has no norm), it ran a whole weight-gradient pass for it (2x the
    input gradient's time). The CPU path sums the bias gradient itself then; the gradients are checked against
    oneDNN's in test_cpu_paths_give_onednns_outputs_and_gradients."""
    from torch.utils._python_dispatch import TorchDispatchMode

    masks = []

    class Masks(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten.convolution_backward.default:
                masks.append(tuple(args[-1]))
            return func(*args, **(kwargs or {}))

    D = Discriminator(64, ndf=8, norm="none").to(memory_format=torch.channels_last)
    use_gemm_wgrad(D, True)
    assert sum(getattr(m, "bias", None) is not None and getattr(m, "gemm_wgrad", False) is True for m in D.modules()) >= 2
    x = torch.randn(4, 3, 64, 64).to(memory_format=torch.channels_last)
    with Masks():
        D(x)[0].sum().backward()
    assert masks and all(weight or not bias for _, weight, bias in masks), masks
    assert all(p.grad is not None for p in D.parameters())
    # the gradient penalty's graph-building backward asks for input gradients only (d scores / d x_hat)
    from gankit.losses import gradient_penalty

    masks.clear()
    with Masks():
        penalty = gradient_penalty(lambda h: D(h)[0], x, torch.randn_like(x))
    assert masks and all(mask == (True, False, False) for mask in masks), masks
    D.zero_grad()
    penalty.backward()  # ... and the penalty still reaches every weight (a piecewise linear D's input gradient
    weights = [p for p in D.parameters() if p.dim() > 1]  # does not depend on its biases: theirs are 0)
    assert weights and all(p.grad is not None and p.grad.abs().sum() > 0 for p in weights)


def test_gradient_penalty_reaches_the_weights_through_weight_gradients():
    """The penalty's backward computes each convolution's weight term as a weight gradient (the GEMM, or oneDNN
    asked for the weight alone), not as autograd's derivative of convolution_backward, which convolves permuted
    tensors: a batch of gradient maps as the "weight" (7-70 GFLOP/s on WGAN-GP's critic). Same gradients as the
    plain layers: test_cpu_paths_give_onednns_outputs_and_gradients."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from gankit.losses import gradient_penalty

    weights = []

    class Convolutions(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten.convolution.default:
                weights.append(tuple(args[1].shape))
            if func is torch.ops.aten.convolution_backward.default:
                weights.append(tuple(args[2].shape))
            return func(*args, **(kwargs or {}))

    torch.manual_seed(0)
    batch = 5  # no layer has 5 channels
    D = Discriminator(64, ndf=8, norm="layer").to(memory_format=torch.channels_last)
    use_gemm_wgrad(D, True)
    use_thin_conv(D, True)
    x = torch.randn(batch, 3, 64, 64).to(memory_format=torch.channels_last)
    penalty = gradient_penalty(lambda h: D(h)[0], x, torch.randn_like(x))
    with Convolutions():
        penalty.backward()
    assert weights and all(shape[1] != batch for shape in weights), weights
    assert all(m.weight.grad is not None and m.weight.grad.abs().sum() > 0 for m in D.modules() if isinstance(m, nn.Conv2d))


def test_gemm_weight_gradient_keeps_its_work_buffers_between_calls():
    """Outside autograd's graph the padded input and the im2col matrix of a shape are kept and refilled (not
    faulted in afresh at every step); each call still returns its own inputs' gradient (the padding stays zero),
    and a graph-recording call gets buffers of its own."""
    from gankit.models import layers

    torch.manual_seed(0)
    x1, x2 = (torch.randn(4, 6, 8, 8).to(memory_format=torch.channels_last) for _ in range(2))
    g = torch.randn(4, 5, 4, 4).to(memory_format=torch.channels_last)
    w = torch.zeros(5, 6, 4, 4)

    def expected(x):
        return torch.ops.aten.convolution_backward(g, x, w, None, (2, 2), (1, 1), (1, 1), False, (0, 0), 1,
                                                   (False, True, False))[1]

    layers._SCRATCH.clear()
    with torch.no_grad():
        a = layers.conv2d_weight_grad(x1, g, (4, 4), (2, 2), (1, 1))
        kept = list(layers._SCRATCH.values())
        assert sorted(key[0] for key in layers._SCRATCH) == ["cols", "padded"]
        kept[0].fill_(7.0)  # what another layer's call would leave there, the border included
        b = layers.conv2d_weight_grad(x2.contiguous(), g, (4, 4), (2, 2), (1, 1))  # NCHW input, same buffers
        assert [m is k for m, k in zip(layers._SCRATCH.values(), kept)] == [True, True]  # the same buffers, refilled
        # a smaller layer's call carves its buffers from the same ones
        c = layers.conv2d_weight_grad(x1[:2, :3], g[:2], (4, 4), (2, 2), (1, 1))
        assert [m is k for m, k in zip(layers._SCRATCH.values(), kept)] == [True, True]
    torch.testing.assert_close(a, expected(x1), rtol=1e-5, atol=1e-5)  # not overwritten by the second call
    torch.testing.assert_close(b, expected(x2), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(c, torch.ops.aten.convolution_backward(
        g[:2], x1[:2, :3], w[:, :3], None, (2, 2), (1, 1), (1, 1), False, (0, 0), 1, (False, True, False))[1])
    layers.conv2d_weight_grad(x1, g, (4, 4), (2, 2), (1, 1))  # grad mode: its buffers may be saved by autograd
    assert [m is k for m, k in zip(layers._SCRATCH.values(), kept)] == [True, True] and len(layers._SCRATCH) == 2


def _transposed(x, w, b):
    return nn.functional.conv_transpose2d(x, w, b, stride=2, padding=1)


def _upsampled(x, w, b):
    return nn.functional.conv2d(nn.functional.interpolate(x, scale_factor=2, mode="nearest"), w, b, padding=1)


@pytest.mark.parametrize("size", [(5, 7), (16, 16)])
@pytest.mark.parametrize("cout", [1, 3, 6])
@pytest.mark.parametrize("phase_form, plain, kernel", [(thin_conv_transpose2d, _transposed, 4),
                                                       (upsample_conv2d, _upsampled, 3)], ids=["transposed", "upsample"])
def test_phase_forms_are_the_layers_they_replace(phase_form, plain, kernel, cout, size):
    """A 4x4 stride-2 transposed convolution, and nearest x2 then a 3x3 convolution, each as one 3x3 convolution
    of the low-resolution map to a channel group per output phase and a pixel shuffle: the same map, bias
    included, with the same gradients for input, weight and bias."""
    torch.manual_seed(0)
    x = torch.randn(2, 5, *size, dtype=torch.float64, requires_grad=True)
    shape = (5, cout, kernel, kernel) if plain is _transposed else (cout, 5, kernel, kernel)
    w = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    b = torch.randn(cout, dtype=torch.float64, requires_grad=True)
    expected, got = plain(x, w, b), phase_form(x, w, b)
    assert got.shape == expected.shape == (2, cout, 2 * size[0], 2 * size[1])
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    grad = torch.randn_like(expected)
    torch.testing.assert_close(torch.autograd.grad(got, (x, w, b), grad),
                               torch.autograd.grad(expected, (x, w, b), grad), rtol=0, atol=1e-12)


def test_thin_path_is_only_switched_on_for_rgb_layers():
    G, D = Generator(64, **TINY), Discriminator(64, **TINY_D)
    use_thin_conv(G, True)
    use_thin_conv(D, True)
    assert [m.thin for m in G.modules() if hasattr(m, "thin")] == [False, False, False, False, True]  # 32 -> 64, 8 -> 3
    assert [m.thin for m in D.modules() if hasattr(m, "thin")] == [True, False, False, False, False]  # 3 -> 8 at 64 px
    use_thin_conv(G, False)
    assert not any(getattr(m, "thin", False) for m in G.modules())
    up = Generator(64, upsample="upsample", **TINY)
    use_thin_conv(up, True)
    assert [getattr(m, "upsampled_input", None) for m in up.modules() if isinstance(m, nn.Conv2d)] == [False] * 3 + [True]
    assert [m.deferred for m in up.modules() if hasattr(m, "deferred")] == [False] * 3 + [True]
    assert set(up.state_dict()) == set(Generator(64, upsample="upsample", **TINY).state_dict())  # same checkpoints
    use_thin_conv(up, False)
    assert not any(getattr(m, "deferred", False) or getattr(m, "upsampled_input", False) for m in up.modules())


# ---------------------------------------------------------------- colour picker

def test_color_picker_paints_within_each_images_palette():
    torch.manual_seed(0)
    picker = ColorPicker(in_channels=8, channels=3, palette_size=5)
    with torch.no_grad():
        picker.logits.weight.mul_(50)  # sharp distributions: values close to single palette entries
    h = torch.randn(4, 8, 6, 6)
    out = picker(h)
    palette = picker.palette_of(h)
    assert out.shape == (4, 3, 12, 12) and palette.shape == (4, 5)
    lo, hi = palette.min(1).values[:, None, None, None], palette.max(1).values[:, None, None, None]
    assert (out >= lo - 1e-6).all() and (out <= hi + 1e-6).all()
    assert out.min() >= -1 and out.max() <= 1
    # sharp distributions pick (nearly) palette entries: most pixels sit close to one of the palette values
    dist = (out[:, :, :, :, None] - palette[:, None, None, None, :]).abs().min(-1).values
    assert (dist < 0.05).float().mean() > 0.8
    # R, G and B choose independently from the same palette
    assert not torch.allclose(out[:, 0], out[:, 1])


def test_a_new_color_pickers_palette_spans_the_range():
    """Its entries start spread over (-1, 1), distinct, whatever the features: not one flat colour at first."""
    torch.manual_seed(0)
    G = Generator(16, upsample="colorpicker", palette_size=5, **TINY)  # the DCGAN init of its layers
    picker = next(m for m in G.modules() if isinstance(m, ColorPicker))
    palette = picker.palette_of(torch.randn(4, picker.palette.in_features, 8, 8))
    assert (palette.min(1).values < -0.9).all() and (palette.max(1).values > 0.9).all()
    assert (palette.sort(1).values.diff(dim=1) > 0.1).all()


def test_color_picker_generator_learns_its_palette():
    torch.manual_seed(0)
    G = Generator(16, upsample="colorpicker", palette_size=4, **TINY)
    opt = torch.optim.Adam(G.parameters(), lr=1e-2)
    target = torch.full((4, 3, 16, 16), 0.9)
    target[:, :, :8] = -0.9
    losses = []
    for _ in range(25):
        loss = (G(torch.randn(4, 16)) - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 0.8 and losses[-1] < 0.5 * losses[0]  # palette and distributions both learn


# ---------------------------------------------------------------- norms, dropout, spectral norm

@pytest.mark.parametrize("norm", ["layer", "instance", "none"])
def test_critic_without_batchnorm_treats_samples_independently(norm):
    torch.manual_seed(0)
    D = Discriminator(32, norm=norm, num_classes=3, **TINY_D)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in D.modules())
    assert sum(isinstance(m, (nn.GroupNorm, nn.InstanceNorm2d)) for m in D.modules()) == (0 if norm == "none" else 2)
    x = torch.randn(6, 3, 32, 32)
    adv, aux = D(x)
    adv0, aux0 = D(x[:1])  # train mode: one sample's score must not depend on the rest of the batch
    assert torch.allclose(adv[:1], adv0, atol=1e-5) and torch.allclose(aux[:1], aux0, atol=1e-5)
    # ...which BatchNorm does not satisfy (the test can fail)
    Dbn = Discriminator(32, norm="batch", **TINY_D)
    assert not torch.allclose(Dbn(x)[0][:1], Dbn(x[:1])[0], atol=1e-5)


def test_input_layer_and_output_layer_have_no_norm():
    D = Discriminator(32, norm="batch", **TINY_D)
    G = Generator(32, **TINY)
    assert isinstance(D.features[0], nn.Conv2d) and isinstance(D.features[1], nn.LeakyReLU)
    assert isinstance(G.net[-2], nn.ConvTranspose2d) and isinstance(G.net[-1], nn.Tanh)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in D.modules()) == 2  # 32 px: 3 blocks, the first without


def test_self_modulated_batchnorm_scales_and_shifts_every_hidden_block_with_z():
    G = Generator(32, norm="selfmod", **TINY)
    norms = [m for m in G.modules() if isinstance(m, SelfModulatedBatchNorm)]
    assert len(norms) == 3 and not any(type(m) is nn.BatchNorm2d and m.affine for m in G.modules())
    norm, x = norms[-1], torch.randn(4, 8, 5, 5)
    z1, z2 = torch.randn(2, 4, 16)
    nn.init.zeros_(norm.mlp[-1].weight)
    nn.init.zeros_(norm.mlp[-1].bias)  # no modulation: a BatchNorm without scale and shift
    plain = torch.nn.functional.batch_norm(x, None, None, training=True)
    assert torch.allclose(norm(x, z1), plain, atol=1e-5) and torch.allclose(norm(x, z2), plain, atol=1e-5)
    nn.init.normal_(norm.mlp[-1].weight)
    assert not torch.allclose(norm(x, z1), norm(x, z2), atol=1e-3)  # the same features, another z: another output
    out = G(torch.randn(4, 16))
    out.mean().backward()
    assert out.shape == (4, 3, 32, 32) and all(n.mlp[0].weight.grad is not None for n in norms)


def test_generator_activation_is_relu_or_leaky_relu():
    relu = [m for m in Generator(32, **TINY).modules() if isinstance(m, (nn.ReLU, nn.LeakyReLU))]
    leaky = [m for m in Generator(32, act="leaky_relu", **TINY).modules() if isinstance(m, (nn.ReLU, nn.LeakyReLU))]
    assert len(relu) == len(leaky) == 3 and all(type(m) is nn.ReLU for m in relu)  # base block + 2 doublings
    assert all(type(m) is nn.LeakyReLU and m.negative_slope == 0.2 for m in leaky)
    cfg = _cfg(g_act="leaky_relu")
    assert any(isinstance(m, nn.LeakyReLU) for m in build_generator(cfg).modules())


@pytest.mark.parametrize("resolution", [16, 64, 300])
def test_max_pooling_discriminator_halves_as_the_strided_one_does(resolution):
    """Seed 001: D of convolutions and max-pooling; the same map sizes (ceil halves) and head as stride-2 convs."""
    pooled = Discriminator(resolution, downsample="maxpool", dropout=0.3, **TINY_D)
    strided = Discriminator(resolution, **TINY_D)
    x = torch.randn(2, 3, resolution, resolution)
    assert pooled.features(x).shape == strided.features(x).shape
    assert pooled(x)[0].shape == (2,)
    pools = [m for m in pooled.features if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == sum(isinstance(m, Conv2d) for m in strided.features) == \
        sum(isinstance(m, Conv2d) and m.kernel_size == (3, 3) and m.stride == (1, 1) for m in pooled.features)
    assert sum(isinstance(m, nn.Dropout) for m in pooled.features) == len(pools)
    assert any(isinstance(m, nn.MaxPool2d) for m in build_discriminator(_cfg(d_downsample="maxpool")).modules())


def test_dropout_after_every_hidden_block():
    G = Generator(32, dropout=0.3, **TINY)
    D = Discriminator(32, dropout=0.3, **TINY_D)
    assert sum(isinstance(m, nn.Dropout) for m in G.modules()) == 3  # base block + 2 doublings
    assert sum(isinstance(m, nn.Dropout) for m in D.modules()) == 3
    z = torch.randn(4, 16)
    assert not torch.equal(G(z), G(z))  # active in training
    G.eval()
    assert torch.equal(G(z), G(z))
    assert not any(isinstance(m, nn.Dropout) for m in Generator(32, **TINY).modules())


def test_spectral_norm_keeps_top_singular_value_at_one():
    torch.manual_seed(0)
    D = Discriminator(32, norm="layer", spectral_norm=True, mbd_features=4, num_classes=3, **TINY_D)
    layers = [m for m in D.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(layers) == 6  # 3 convs, MBD's T, adv head, aux head
    x = torch.randn(8, 3, 32, 32)
    for _ in range(3):  # a few training forwards: one power iteration each
        D(x)
    D.eval()
    for m in layers:
        w = m.weight.detach()
        sigma = torch.linalg.matrix_norm(w.reshape(w.shape[0], -1), ord=2)
        assert abs(sigma.item() - 1) < 0.05, m
    # without it the same layers are far from 1 (the test can fail)
    plain = Discriminator(32, norm="layer", **TINY_D).features[0].weight.detach()
    assert torch.linalg.matrix_norm(plain.reshape(plain.shape[0], -1), ord=2) < 0.5


# ---------------------------------------------------------------- minibatch discrimination

def test_minibatch_features_tell_collapsed_from_diverse_batches():
    torch.manual_seed(0)
    mbd = MinibatchDiscrimination(in_features=32, out_features=10, kernel_dim=5)
    init_weights(mbd, "normal", 0.5)
    diverse = torch.randn(8, 32)
    collapsed = diverse[:1].expand(8, 32)
    o_div, o_col = mbd(diverse), mbd(collapsed)
    assert o_div.shape == o_col.shape == (8, 10)
    assert torch.allclose(o_col, torch.full_like(o_col, 7.0))  # exp(0) from each of the 7 others, self excluded
    assert o_div.max() < 1.0
    assert torch.equal(mbd(diverse[:1]), torch.zeros(1, 10))  # alone in its batch: nothing to compare with


def test_minibatch_features_pass_gradients_to_the_other_samples_features():
    """D's score of one image depends on the other images of its batch through the minibatch features, gradients
    included: that is what lets G learn to make its batch diverse (Salimans et al.)."""
    torch.manual_seed(0)
    D = Discriminator(16, norm="layer", mbd_features=8, mbd_kernel_dim=4, **TINY_D)  # otherwise per sample
    x = torch.rand(1, 3, 16, 16).expand(4, -1, -1, -1) + 0.01 * torch.randn(4, 3, 16, 16)  # near: similar features
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x)[0][0], x)
    assert grad[1:].abs().sum() > 0
    plain = Discriminator(16, norm="layer", **TINY_D)
    (grad,) = torch.autograd.grad(plain(x)[0][0], x)
    assert grad[1:].abs().sum() == 0


def test_minibatch_std_measures_spread_within_groups_of_consecutive_images():
    torch.manual_seed(0)
    layer = MinibatchStdDev(4)
    diverse = torch.randn(8, 5, 3, 3)
    mixed = torch.cat([diverse[:4], diverse[4:5].expand(4, -1, -1, -1)])  # a diverse group, then a collapsed one
    out = layer(mixed)
    assert out.shape == (8, 6, 3, 3) and torch.equal(out[:, :5], mixed)
    spread = out[:, 5]
    assert torch.all(spread[:4] > 0.5) and torch.allclose(spread[4:], torch.full_like(spread[4:], 1e-4))
    assert torch.equal(layer(diverse)[:4], out[:4])  # a group's feature ignores the images of other groups
    assert torch.all(spread == spread[:, :1, :1])  # one value per image, the same at every position
    six = MinibatchStdDev(4)(torch.randn(6, 2, 1, 1))[:, 2].flatten()  # 6 images: groups of 3, the largest divisor
    assert six[0] == six[2] != six[3] == six[5]


@pytest.mark.parametrize("trick", ["mbd", "mbstd"])
def test_batch_tricks_let_d_reject_a_collapsed_batch(trick):
    """The fakes are copies of one real image: a per-sample D cannot tell them apart; minibatch discrimination
    and minibatch std can."""
    torch.manual_seed(0)
    real = torch.rand(8, 3, 16, 16) * 2 - 1
    fake = real[:1].expand(8, -1, -1, -1)
    plain = Discriminator(16, norm="layer", **TINY_D)
    assert torch.allclose(plain(fake)[0], plain(real[:1])[0].expand(8), atol=1e-5)
    if trick == "mbd":
        D = Discriminator(16, norm="layer", mbd_features=8, mbd_kernel_dim=4, **TINY_D)
        assert isinstance(D.head, nn.Linear) and D.head.in_features == 16 * 4 * 4 + 8
    else:
        D = Discriminator(16, norm="layer", mbstd_group=4, **TINY_D)
        assert D.head.in_channels == 16 + 1
    opt = torch.optim.Adam(D.parameters(), lr=2e-3, betas=(0.5, 0.999))
    bce = nn.functional.binary_cross_entropy_with_logits
    for _ in range(10):
        r, f = D(real)[0], D(fake)[0]
        loss = bce(r, torch.ones_like(r)) + bce(f, torch.zeros_like(f))
        opt.zero_grad()
        loss.backward()
        opt.step()
    # every fake now scores below every real, the copied real image included
    assert D(real)[0].min() - D(fake)[0].max() > 0.1


# ---------------------------------------------------------------- ACGAN

def test_acgan_generator_uses_labels_and_discriminator_returns_logits():
    torch.manual_seed(0)
    G = Generator(16, num_classes=4, embed_dim=6, **TINY).eval()
    z = torch.randn(1, 16).expand(4, 16)
    images = G(z, torch.arange(4))
    assert images.shape == (4, 3, 16, 16)
    assert all((images[i] - images[0]).abs().max() > 1e-3 for i in range(1, 4))
    assert torch.equal(G(z, torch.arange(4)), images)
    with pytest.raises(ValueError, match="conditional"):
        G(z)
    D = Discriminator(16, num_classes=4, **TINY_D)
    adv, aux = D(images)
    assert adv.shape == (4,) and aux.shape == (4, 4)
    assert not torch.allclose(aux.sum(1), torch.ones(4))  # raw logits, no softmax before cross-entropy
    nn.functional.cross_entropy(aux, torch.arange(4)).backward()
    assert D.aux.weight.grad is not None and D.aux.weight.grad.abs().sum() > 0


def _cfg(**model):
    return build_config({"data": {"resolution": 16}, "model": {"channels": 3, **TINY, **TINY_D, **model}})


def _framework_values(*nets: nn.Module) -> tuple[set, set]:
    """({LeakyReLU slopes}, {(BatchNorm momentum, eps)}) of every such layer in `nets`."""
    modules = [m for net in nets for m in net.modules()]
    return ({m.negative_slope for m in modules if isinstance(m, nn.LeakyReLU)},
            {(m.momentum, m.eps) for m in modules if isinstance(m, nn.BatchNorm2d)})


@pytest.mark.parametrize("model", [{"g_act": "leaky_relu"}, {"g_act": "leaky_relu", "d_downsample": "maxpool"},
                                   {"g_norm": "selfmod", "g_act": "leaky_relu"}], ids=["stride", "maxpool", "selfmod"])
def test_keras_framework_values_reach_every_leaky_relu_and_batchnorm_of_g_and_d(model):
    """Seed 001's tf.keras layers keep LeakyReLU's 0.3 and BatchNorm's momentum 0.99 (PyTorch's 0.01) and epsilon
    1e-3, where gankit hard-coded 0.2 and PyTorch's 0.1 and 1e-5: the recipe could not say them. The defaults stay."""
    G, D = build_generator(_cfg(**model)), build_discriminator(_cfg(**model))
    assert _framework_values(G, D) == ({0.2}, {(0.1, 1e-5)})
    keras = _cfg(**model, leaky_slope=0.3, bn_momentum=0.01, bn_eps=1e-3)
    G, D = build_generator(keras), build_discriminator(keras)
    assert _framework_values(G, D) == ({0.3}, {(0.01, 1e-3)})
    assert _framework_values(G)[0] == _framework_values(D)[0] == {0.3}  # both nets' activations
    assert _framework_values(G)[1] == _framework_values(D)[1] == {(0.01, 1e-3)}  # both nets' norms
    x = torch.randn(4, 8, 5, 5)
    bn = next(m for m in G.modules() if isinstance(m, nn.BatchNorm2d) and m.num_features == 8)
    bn.train()(x)  # the running statistics move by the momentum: 0.01 of the batch's
    assert torch.allclose(bn.running_mean, 0.01 * x.mean((0, 2, 3)), atol=1e-6)


def test_kaimings_gain_follows_the_leaky_slope():
    """init kaiming is He normal for the models' LeakyReLU: with another slope, another gain (0.2 by default)."""
    def gain(slope):
        return math.sqrt(2 / (1 + slope**2))

    torch.manual_seed(0)
    m = _probe()
    init_weights(m, "kaiming")
    assert m[0].weight.std().item() == pytest.approx(gain(0.2) / math.sqrt(64 * 9), rel=0.03)
    init_weights(m, "kaiming", leaky_slope=0.3)
    assert m[0].weight.std().item() == pytest.approx(gain(0.3) / math.sqrt(64 * 9), rel=0.03)
    D = build_discriminator(_cfg(init="kaiming", leaky_slope=0.9, ndf=64))
    fan_in = D.features[0].weight[0].numel()
    assert D.features[0].weight.std().item() == pytest.approx(gain(0.9) / math.sqrt(fan_in), rel=0.15)


def test_builders_follow_the_config():
    G, D = build_generator(_cfg()), build_discriminator(_cfg())
    assert G.embed is None and D.aux is None and D.mbd is None
    cfg = _cfg(arch="acgan", num_classes=5, embed_dim=7, d_norm="instance", mbd_features=3, spectral_norm=True,
               upsample="upsample", g_norm="none", g_dropout=0.2)
    G, D = build_generator(cfg), build_discriminator(cfg)
    assert G.embed.weight.shape == (5, 7) and D.aux.out_channels == 5 and D.mbd.out_features == 3
    assert any(isinstance(m, nn.InstanceNorm2d) for m in D.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in G.modules())
    assert any(isinstance(m, nn.Upsample) for m in G.modules())
    assert all(hasattr(m, "parametrizations") for m in D.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    # a dcgan on a labelled dataset stays unconditional; an acgan without labels is a one-line config error
    assert build_generator(_cfg(num_classes=5)).embed is None
    assert {m.kernel_size for m in [*build_generator(_cfg(kernel=5)).modules(), *build_discriminator(_cfg(kernel=5)).modules()]
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and m.stride == (2, 2)} == {(5, 5)}
    with pytest.raises(ConfigError, match="labels"):
        build_generator(_cfg(arch="acgan"))
    pickers = [m for m in build_generator(_cfg(upsample="colorpicker", palette_size=6)).modules()
               if isinstance(m, ColorPicker)]
    assert len(pickers) == 1 and pickers[0].palette_size == 6 and pickers[0].base_palette.shape == (6,)
    assert build_discriminator(_cfg(mbd_features=3, mbd_kernel_dim=7)).mbd.kernel_dim == 7


# ---------------------------------------------------------------- init

def _probe() -> nn.Module:
    return nn.Sequential(nn.Conv2d(64, 128, 3), nn.BatchNorm2d(128), nn.ConvTranspose2d(128, 64, 4), nn.Linear(256, 128))


def test_init_schemes_give_their_statistics():
    conv_fan_in, conv_fan_out = 64 * 9, 128 * 9
    torch.manual_seed(0)
    m = _probe()
    init_weights(m, "normal", 0.05)
    assert m[0].weight.std().item() == pytest.approx(0.05, rel=0.03) and abs(m[0].weight.mean()) < 0.002
    assert m[1].weight.mean().item() == pytest.approx(1.0, abs=0.02) and m[1].weight.std().item() == pytest.approx(0.05, rel=0.2)
    assert m[0].bias.abs().sum() == 0 and m[1].bias.abs().sum() == 0

    init_weights(m, "xavier")
    assert m[0].weight.std().item() == pytest.approx(math.sqrt(2 / (conv_fan_in + conv_fan_out)), rel=0.03)
    assert torch.equal(m[1].weight, torch.ones(128))

    init_weights(m, "xavier_uniform")  # Keras' glorot_uniform: U(-limit, limit), limit sqrt(6 / (fan_in + fan_out))
    limit = math.sqrt(6 / (conv_fan_in + conv_fan_out))
    assert m[0].weight.abs().max().item() <= limit and m[0].weight.abs().max().item() > 0.99 * limit
    assert m[0].weight.std().item() == pytest.approx(limit / math.sqrt(3), rel=0.03)
    assert torch.equal(m[1].weight, torch.ones(128)) and m[0].bias.abs().sum() == 0

    init_weights(m, "kaiming")
    gain = math.sqrt(2 / (1 + 0.2**2))
    assert m[0].weight.std().item() == pytest.approx(gain / math.sqrt(conv_fan_in), rel=0.03)
    assert m[3].weight.std().item() == pytest.approx(gain / math.sqrt(256), rel=0.03)

    init_weights(m, "orthogonal")
    w = m[0].weight.reshape(128, -1)
    assert torch.allclose(w @ w.t(), torch.eye(128), atol=1e-4)

    torch.manual_seed(1)
    fresh = _probe()
    torch.manual_seed(1)
    untouched = _probe()
    init_weights(untouched, "default")
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), untouched.state_dict().values()))
    with pytest.raises(ValueError, match="unknown init"):
        init_weights(m, "he")


def test_init_reaches_spectral_normed_weights_and_models_use_the_scheme():
    D = Discriminator(16, init="normal", init_std=0.1, **TINY_D)
    assert D.features[0].weight.std().item() == pytest.approx(0.1, rel=0.1)
    Dsn = Discriminator(16, spectral_norm=True, **TINY_D)
    init_weights(Dsn, "normal", 0.3)
    raw = Dsn.features[0].parametrizations.weight.original
    assert raw.std().item() == pytest.approx(0.3, rel=0.1)
    G = Generator(16, init="orthogonal", **TINY)
    w = G.net[0].weight.reshape(G.net[0].weight.shape[0], -1)  # [16, 16*4*4]: orthonormal rows
    assert torch.allclose(w @ w.t(), torch.eye(w.shape[0]), atol=1e-4)


# ---------------------------------------------------------------- through the trainer

@pytest.mark.slow
def test_every_option_at_once_trains_and_samples(tmp_path):
    """A 20 px (not a power of two) ACGAN with colour picker, self-modulated G, MBD, minibatch std, spectral and layer
    norm, dropout and orthogonal init runs through the training loop and `gankit sample`'s loader."""
    import json

    from conftest import make_image_folder, tiny_layers
    from gankit.sample import load_run_generator
    from gankit.train import run_training

    make_image_folder(tmp_path / "images", n=16, classes=("a", "b"))
    layers = tiny_layers(tmp_path / "images", epochs=1, loss="wgan_gp", strategy="critic", n_critic=1)
    layers[0]["data"].update(resolution=20, labels="folders")
    layers[0]["model"].update(arch="acgan", upsample="colorpicker", palette_size=6, d_norm="layer", mbd_features=4,
                              d_mbstd_group=2, spectral_norm=True, g_dropout=0.1, d_dropout=0.1, init="orthogonal",
                              g_norm="selfmod")
    run = run_training(layers, tmp_path / "run")
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert math.isfinite(last["d_loss"]) and math.isfinite(last["g_loss"]) and "aux_acc_real" in last
    gen = load_run_generator(run, device="cpu")
    assert gen.G.num_classes == 2
    images = gen.sample(4, seed=0)
    assert images.shape == (4, 3, 20, 20) and images.min() >= -1 and images.max() <= 1


def test_a_run_with_5x5_kernels_trains_and_samples_with_them(tmp_path):
    """model.kernel reaches the trained models, their checkpoint and `gankit sample`'s rebuilt generator."""
    from conftest import make_image_folder, tiny_layers
    from gankit.sample import load_run_generator
    from gankit.train import run_training

    make_image_folder(tmp_path / "images", n=16)
    layers = tiny_layers(tmp_path / "images", epochs=1)
    layers[0]["model"]["kernel"] = 5
    run = run_training(layers, tmp_path / "run")
    gen = load_run_generator(run, device="cpu")
    assert {m.kernel_size for m in gen.G.modules() if isinstance(m, nn.ConvTranspose2d) and m.stride == (2, 2)} == {(5, 5)}
    images = gen.sample(4, seed=0)
    assert images.shape[0] == 4 and images.shape[-1] == layers[0]["data"]["resolution"]


def test_minibatch_features_are_sums_of_exp_minus_l1_distances_to_the_other_samples():
    torch.manual_seed(0)
    mbd = MinibatchDiscrimination(in_features=6, out_features=3, kernel_dim=4)
    x = torch.randn(5, 6) * 0.3
    m = (x @ mbd.T.weight.t()).view(5, 3, 4)  # [N, B, C]
    expected = torch.stack([sum(torch.exp(-(m[i] - m[j]).abs().sum(-1)) for j in range(5) if j != i) for i in range(5)])
    assert expected.min() > 0.5 and expected.max() < 3.5  # neither collapsed nor all far apart: the distance counts
    torch.testing.assert_close(mbd(x), expected, rtol=1e-5, atol=1e-6)


def test_minibatch_std_is_the_groups_population_std_averaged_over_features():
    torch.manual_seed(0)
    x = torch.randn(8, 2, 3, 3)
    out = MinibatchStdDev(4)(x)[:, 2]
    for group in (slice(0, 4), slice(4, 8)):
        expected = (x[group].var(0, unbiased=False) + 1e-8).sqrt().mean()
        torch.testing.assert_close(out[group], expected.expand(4, 3, 3))


def test_init_std_reaches_both_models_weights_through_the_builders():
    cfg = _cfg(init_std=0.1)
    for net in (build_generator(cfg), build_discriminator(cfg)):
        convs = [m.weight for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and m.weight.numel() > 1000]
        assert convs and all(w.std().item() == pytest.approx(0.1, rel=0.1) for w in convs), type(net).__name__


def test_dropout_drops_the_configured_fraction_in_g_and_d():
    for net in (Generator(32, dropout=0.3, **TINY), Discriminator(32, dropout=0.3, **TINY_D)):
        drops = [m for m in net.modules() if isinstance(m, nn.Dropout)]
        torch.manual_seed(0)
        for m in drops:
            y = m(torch.ones(20000))
            assert (y == 0).float().mean().item() == pytest.approx(0.3, abs=0.02)
            assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1 / 0.7))


@pytest.mark.parametrize("norm", ["layer", "instance"])
def test_layer_and_instance_norms_normalise_their_axes_with_a_learned_scale_and_shift(norm):
    D = Discriminator(32, norm=norm, **TINY_D)
    layer = next(m for m in D.modules() if isinstance(m, (nn.GroupNorm, nn.InstanceNorm2d)))
    assert layer.weight is not None and layer.bias is not None  # learned scale and shift
    nn.init.constant_(layer.weight, 2.0)
    nn.init.constant_(layer.bias, 0.5)
    torch.manual_seed(0)
    x = torch.randn(3, layer.weight.numel(), 5, 5) * torch.arange(1.0, layer.weight.numel() + 1)[:, None, None] + 1
    dims = (1, 2, 3) if norm == "layer" else (2, 3)  # layer: each sample over (C, H, W); instance: each channel over (H, W)
    ref = (x - x.mean(dims, keepdim=True)) / (x.var(dims, unbiased=False, keepdim=True) + 1e-5).sqrt() * 2 + 0.5
    torch.testing.assert_close(layer(x), ref, rtol=1e-4, atol=1e-4)


def test_the_gemm_weight_gradient_of_many_bf16_chunks_is_summed_in_fp32(monkeypatch):
    from gankit.models import layers

    torch.manual_seed(0)
    x = torch.rand(32, 4, 8, 8).to(memory_format=torch.channels_last)  # positive: the partial sums only grow
    g = torch.rand(32, 5, 4, 4).to(memory_format=torch.channels_last)
    exact = layers.conv2d_weight_grad(x.double(), g.double(), (4, 4), (2, 2), (1, 1))
    whole = layers.conv2d_weight_grad(x.bfloat16(), g.bfloat16(), (4, 4), (2, 2), (1, 1))
    monkeypatch.setattr(layers, "COLS_CHUNK", 4 * 4 * 16 * 4)  # one image per GEMM: 32 partial sums
    with torch.no_grad():
        chunked = layers.conv2d_weight_grad(x.bfloat16(), g.bfloat16(), (4, 4), (2, 2), (1, 1))
    assert chunked.dtype == torch.bfloat16
    assert (chunked.double() - exact).norm() <= 1.5 * (whole.double() - exact).norm()


def test_color_picker_is_the_softmax_weighted_palette_of_nearest_upsampled_logits():
    torch.manual_seed(0)
    picker = ColorPicker(in_channels=8, channels=3, palette_size=5)
    h = torch.randn(2, 8, 4, 4, requires_grad=True)
    up = h.repeat_interleave(2, 2).repeat_interleave(2, 3)  # nearest x2
    logits = nn.functional.conv2d(up, picker.logits.weight, picker.logits.bias, padding=1).view(2, 3, 5, 8, 8)
    palette = torch.tanh(picker.base_palette + h.mean((2, 3)) @ picker.palette.weight.t() + picker.palette.bias)
    expected = (logits.softmax(2) * palette[:, None, :, None, None]).sum(2)
    out = picker(h)
    torch.testing.assert_close(out, expected)
    grad = torch.randn_like(out)  # the palette's path to the features too
    torch.testing.assert_close(torch.autograd.grad(out, h, grad)[0], torch.autograd.grad(expected, h, grad)[0])


def test_generator_crops_the_center_of_the_map_it_makes():
    torch.manual_seed(0)
    G = Generator(100, **TINY).eval()  # base 7: makes 112 px, crops 6 from every side
    z = torch.randn(2, 16)
    with torch.no_grad():
        full = G.net(z[:, :, None, None])
        assert full.shape[-1] == 112
        torch.testing.assert_close(G(z), full[..., 6:106, 6:106], rtol=0, atol=0)
