"""Building blocks the DCGAN family adds to plain convolutions: normalisation choice, minibatch
discrimination (seeds 000/003), minibatch standard deviation and the colour-picker output layer (seed 002).
"""

from __future__ import annotations

import contextlib
import math
import time

import torch
from torch import nn


def norm_layer(kind: str, channels: int, bn_momentum: float = 0.1, bn_eps: float = 1e-5) -> nn.Module:
    """The normalisation of a conv block: batch (with `bn_momentum` and `bn_eps`, PyTorch's by default) | layer | instance.

    `layer` normalises each sample over (C, H, W) (GroupNorm with one group) and `instance` each
    sample's channels over (H, W), both with a learned scale and shift: neither mixes samples of a
    batch, which the WGAN-GP penalty needs (seed 002, Gulrajani et al.).
    """
    if kind == "batch":
        return nn.BatchNorm2d(channels, eps=bn_eps, momentum=bn_momentum)
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    raise ValueError(f"unknown norm {kind!r}: choose batch, layer, instance or none")


class SelfModulatedBatchNorm(nn.Module):
    """BatchNorm whose scale and shift are functions of the latent (self-modulation, Chen et al. 2019):
    BN(x) * (1 + gamma(z)) + beta(z), gamma and beta from a small MLP of z ([N, z_dim] -> hidden -> 2C).

    Each G block can then change with z, not only through the feature maps. The output layer starts near
    0 (N(0, 0.02) under the DCGAN init), so the block starts as a plain BatchNorm (`bn_momentum`, `bn_eps`).
    """

    def __init__(self, channels: int, z_dim: int, hidden: int = 32, bn_momentum: float = 0.1, bn_eps: float = 1e-5):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, eps=bn_eps, momentum=bn_momentum, affine=False)
        self.mlp = nn.Sequential(nn.Linear(z_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 2 * channels))

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.mlp(z).to(x.dtype)[:, :, None, None].chunk(2, 1)
        return torch.addcmul(beta, self.bn(x), 1 + gamma)


class MinibatchDiscrimination(nn.Module):
    """Features that tell D how similar each sample is to the rest of its batch (Salimans et al. 2016).

    For x in R^A (one flattened sample), M = x T with T in R^(A x B*C) gives B rows of size C per
    sample; c_b(x_i, x_j) = exp(-||M_i,b - M_j,b||_1) and o_b(x_i) = sum_{j != i} c_b(x_i, x_j).
    A collapsed batch (all samples alike) gets o close to N - 1, a diverse one close to 0, so D can
    reject batches of near-identical fakes. Returns o: [N, B], to concatenate to D's features.
    """

    def __init__(self, in_features: int, out_features: int, kernel_dim: int):
        super().__init__()
        self.out_features, self.kernel_dim = out_features, kernel_dim
        self.T = nn.Linear(in_features, out_features * kernel_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.T(x.flatten(1)).unflatten(1, (self.out_features, self.kernel_dim))  # [N, B, C]
        m = m.to(torch.promote_types(m.dtype, torch.float32))  # distances and exp in at least fp32 under autocast
        m = m.transpose(0, 1)  # [B, N, C]: one L1 distance matrix per kernel
        similarity = torch.exp(-torch.cdist(m, m, p=1))  # [B, N, N], 1 on the diagonal
        o = similarity.sum(2) - 1  # drop each sample's similarity to itself
        return o.t().to(x.dtype)


class MinibatchStdDev(nn.Module):
    """One more feature map telling D how varied the images around each one are (Karras et al. 2018, ProGAN/StyleGAN).

    The batch is cut into groups of `group` consecutive images (the largest divisor of N not above
    `group`); per group, the standard deviation of every feature over its images, averaged over
    features and positions, is appended as a constant channel to each of its images: [N, C, H, W] ->
    [N, C + 1, H, W]. A collapsed G gives fakes with ~0 spread, which D learns to reject. Groups are
    consecutive so that a fused [real; fake] batch, each half a multiple of `group`, never mixes the two.
    """

    def __init__(self, group: int):
        super().__init__()
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        g = max(d for d in range(1, min(self.group, n) + 1) if n % d == 0)
        y = x.float().unflatten(0, (n // g, g))  # [N/g, g, C, H, W], statistics in fp32 under autocast
        spread = (y.var(1, unbiased=False) + 1e-8).sqrt().mean((1, 2, 3))  # [N/g]
        feature = spread.repeat_interleave(g).to(x.dtype)[:, None, None, None].expand(n, 1, h, w)
        return torch.cat([x, feature], 1)


class ColorPicker(nn.Module):
    """Output layer that paints with a palette (ConorLazarou/PokeGAN, described in seed 002).

    From the last feature map [N, F, H, W] it makes, per image, a palette of `palette_size` values
    in (-1, 1) shared by every channel (tanh of a learned base palette, which starts spread over
    the range, plus a linear map of the globally pooled features), and
    per channel and output pixel a softmax distribution over the palette (nearest x2 upsampling,
    3x3 conv to channels * palette_size logits). Each channel is the distribution-weighted sum of
    the palette, so every output value lies between the palette's smallest and largest entry:
    images come out with few, flat colours. Output: [N, channels, 2H, 2W] in (-1, 1).

    PokeGAN itself shares one distribution between R, G and B and gives each channel its own
    palette; seed 002 describes (and this layer does) the transpose of that.
    """

    def __init__(self, in_channels: int, channels: int, palette_size: int):
        super().__init__()
        self.channels, self.palette_size = channels, palette_size
        self.base_palette = nn.Parameter(torch.linspace(-2.0, 2.0, palette_size))  # tanh: -0.96 .. 0.96
        self.palette = nn.Linear(in_channels, palette_size)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.logits = nn.Conv2d(in_channels, channels * palette_size, 3, 1, 1)

    def palette_of(self, h: torch.Tensor) -> torch.Tensor:
        """Each image's palette: [N, palette_size] in (-1, 1)."""
        return torch.tanh(self.base_palette + self.palette(h.mean((2, 3))))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        logits = self.logits(self.upsample(h)).unflatten(1, (self.channels, self.palette_size))
        weights = logits.softmax(2)  # [N, C, P, H, W]: per channel and pixel, a distribution over the palette
        return torch.einsum("ncphw,np->nchw", weights, self.palette_of(h).to(weights.dtype))


_SCRATCH: dict[tuple, torch.Tensor] = {}  # the weight gradient's work buffers by (kind, dtype, device)
COLS_CHUNK = 1 << 23  # im2col elements per GEMM of the weight gradient (32 MB in fp32)


def _scratch(kind: str, shape: tuple, like: torch.Tensor) -> torch.Tensor | None:
    """A work buffer of `shape` carved from one flat buffer per kind, kept from call to call and from layer to layer
    (grown when a larger one is asked); None inside autograd's graph (a buffer saved for a double backward must not
    be overwritten by the next call). Its contents are whatever the last call left there.

    A fresh buffer would be faulted in page by page at every step: glibc's malloc gives blocks above its mmap
    threshold (at most 32 MB; DCGAN-64's D 16 -> 8 layer's im2col matrix in fp32 needs 33.5 MB) back to the OS
    when they are freed, and the copy into new memory took 23-25 ms against 2.9 ms into a kept one (one core
    of a 2-core AMD EPYC without AVX-512)."""
    if torch.is_grad_enabled():
        return None
    key = (kind, like.dtype, like.device)
    numel = math.prod(shape)
    buf = _SCRATCH.get(key)
    if buf is None or buf.numel() < numel:
        buf = _SCRATCH[key] = torch.empty(numel, dtype=like.dtype, device=like.device)
    return buf[:numel].view(shape)


def _padded_nhwc(x: torch.Tensor, ph: int, pw: int) -> torch.Tensor:
    """x [N, C, H, W] zero-padded by (ph, pw), as a contiguous [N, H+2ph, W+2pw, C]; outside autograd's graph
    into a kept buffer, whose border is zeroed and interior copied (F.pad into fresh memory: 3.2 ms against 0.5 ms
    for [64, 128, 16, 16], fp32, one core)."""
    n, c, h, w = x.shape
    buf = _scratch("padded", (n, h + 2 * ph, w + 2 * pw, c), x) if ph or pw else None
    if buf is None:
        return nn.functional.pad(x, (pw, pw, ph, ph)).permute(0, 2, 3, 1).contiguous()
    for border in (buf[:, :ph], buf[:, ph + h:], buf[:, ph:ph + h, :pw], buf[:, ph:ph + h, pw + w:]):
        border.zero_()
    buf[:, ph:ph + h, pw:pw + w].copy_(x.permute(0, 2, 3, 1))
    return buf


def _cols_matrix(patches: torch.Tensor) -> torch.Tensor:
    """`patches` [N, Ho, Wo, kh, kw, C] copied into a [N*Ho*Wo, kh*kw*C] matrix (in a kept buffer)."""
    matrix = _scratch("cols", patches.shape, patches)
    if matrix is None:
        return patches.reshape(-1, math.prod(patches.shape[3:]))
    return matrix.copy_(patches).view(-1, math.prod(patches.shape[3:]))


def conv2d_weight_grad(x: torch.Tensor, grad_out: torch.Tensor, kernel: tuple[int, int],
                       stride: tuple[int, int], padding: tuple[int, int]) -> torch.Tensor:
    """The gradient of conv2d(x, w, stride=stride, padding=padding) with respect to w, as im2col GEMMs.

    im2col: the padded input (`_padded_nhwc`), viewed as [N, Ho, Wo, kh, kw, C] patches, is copied into a
    [N*Ho*Wo, kh*kw*C] matrix (`_cols_matrix`), and grad_w = grad_out^T @ cols (the BLAS reads grad_out
    transposed in place). The matrix is built and multiplied in chunks of whole images, or of output rows of
    one image, of at most `COLS_CHUNK` elements, whose products are summed (in fp32 for lower precisions), so its
    memory stays bounded on large maps (D's 150 -> 75 px layer at 300 px: 92 MB per image). Returns
    [O, C, kh, kw] laid out channels-last (what `.to(memory_format=torch.channels_last)` weights have).
    Dilation 1, one group.
    """
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    n, c, _, _ = x.shape
    o, ho, wo = grad_out.shape[1:]
    per_row = wo * kh * kw * c  # im2col elements per output row
    rows = max(1, min(ho, COLS_CHUNK // per_row))  # output rows per chunk
    images = max(1, min(n, COLS_CHUNK // (per_row * ho))) if rows == ho else 1
    chunked = images < n or rows < ho  # then the products are summed in fp32 (bf16 would round every partial sum)
    g = grad_out.permute(0, 2, 3, 1)  # [N, Ho, Wo, O]
    grad_w = None
    for i in range(0, n, images):
        xp = _padded_nhwc(x[i:i + images], ph, pw)  # [b, H+2ph, W+2pw, C]
        s_n, s_h, s_w, s_c = xp.stride()
        for r in range(0, ho, rows):
            m = min(rows, ho - r)
            patches = xp.as_strided((xp.shape[0], m, wo, kh, kw, c), (s_n, sh * s_h, sw * s_w, s_h, s_w, s_c),
                                    xp.storage_offset() + r * sh * s_h)
            part = g[i:i + images, r:r + m].reshape(-1, o).t() @ _cols_matrix(patches)
            if grad_w is None:
                grad_w = part.float() if chunked else part
            else:
                grad_w += part
    return grad_w.to(x.dtype).view(-1, kh, kw, c).permute(0, 3, 1, 2)


THIN_CHANNELS = 4  # 2x upsampling layers to at most this many channels (RGB, gray) take the phase forms below

# The phase forms: a 2x upsampling layer computed as one 3x3 convolution of the low-resolution map to 4x the
# channels, one group per output phase (row and column parity), then a pixel shuffle. TAPS[p, d, k] = 1 where
# row k of the layer's kernel reaches low-resolution row i + d - 1 from output row 2i + p (columns likewise);
# a phase kernel sums the taps that reach the same pixel.
# A 4x4 stride-2 transposed convolution: row 2i + p takes input row i + d - 1 through kernel row p + 2 - 2d.
_TRANSPOSED_TAPS = torch.tensor([[[0., 0., 0., 1.], [0., 1., 0., 0.], [0., 0., 0., 0.]],
                                 [[0., 0., 0., 0.], [0., 0., 1., 0.], [1., 0., 0., 0.]]])
# Nearest x2 then a 3x3 convolution: p = 0: i - 1 <- row 0, i <- rows 1 and 2; p = 1: i <- rows 0 and 1, i + 1 <- row 2.
_UPSAMPLED_TAPS = torch.tensor([[[1., 0., 0.], [0., 1., 1.], [0., 0., 0.]],
                                [[0., 0., 0.], [1., 1., 0.], [0., 0., 1.]]])


def _phase_conv(x: torch.Tensor, weight: torch.Tensor, taps: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """The phase form of a 2x upsampling layer whose kernel is `weight` [Cout, Cin, k, k] read through `taps`."""
    cout, cin = weight.shape[:2]
    with torch.autocast(x.device.type, enabled=False):  # the phase kernel in the weight's own precision
        taps = taps.to(weight.device, weight.dtype)
        phase_weight = torch.einsum("pya,qxb,oiab->opqiyx", taps, taps, weight).reshape(4 * cout, cin, 3, 3)
    phase_bias = None if bias is None else bias.repeat_interleave(4)
    return nn.functional.pixel_shuffle(nn.functional.conv2d(x, phase_weight, phase_bias, padding=1), 2)


def thin_conv_transpose2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """conv_transpose2d(x, weight, bias, stride=2, padding=1) for a 4x4 kernel with few output channels (G's RGB
    output layer; a convolution from RGB's input gradient), in phase form.

    Each 4x4 tap lands in exactly one phase, so this is the same sum with the same weights: it only spends
    2.25x the FLOPs on zeros to give oneDNN an output wide enough to run well (64 -> 3 channels at 32 -> 64 px,
    bf16, two EPYC cores: 3.2 ms against 5.9 ms; README Performance). weight: [Cin, Cout, 4, 4] as
    conv_transpose2d takes it.
    """
    return _phase_conv(x, weight.transpose(0, 1), _TRANSPOSED_TAPS, bias)


def upsample_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """conv2d(interpolate(x, scale_factor=2, mode="nearest"), weight, bias, padding=1) for a 3x3 kernel, in phase
    form: without making the upsampled map (seed 002's upsample + conv G; at 32 -> 64 px to 3 channels, bf16, two
    EPYC cores: forward and backward 6.6 ms against 22.9 ms; README Performance). Gradients flow to weight through
    the phase kernels' sums.
    """
    return _phase_conv(x, weight, _UPSAMPLED_TAPS, bias)


def whole_map_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """conv2d(x, weight, bias) for a kernel as large as the map (D's last layers, base x base -> 1x1), as the
    matrix product it is: [N, C*k*k] @ [C*k*k, O], flattened in the input's layout (a view for both when input
    and weight are channels-last). oneDNN took 4.2 ms per forward and backward for DCGAN-64's score layer (512 x
    4 x 4 -> 1, 64 images, fp32, one core) against 0.4 ms as the product; autograd's own backward (a double
    backward included) is the product's."""
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        x, weight = x.permute(0, 2, 3, 1), weight.permute(0, 2, 3, 1)
    return nn.functional.linear(x.reshape(x.shape[0], -1), weight.reshape(weight.shape[0], -1), bias)[:, :, None, None]


_INPUT_GRADIENTS_ONLY = [False]


@contextlib.contextmanager
def input_gradients_only():
    """Inside it, `_CpuConv`'s graph-building backward computes the input gradient alone: for a gradient penalty's
    torch.autograd.grad(scores, x, create_graph=True), which wants d scores / d x and not the weights' gradients
    (the graph it builds still reaches the weights). A custom Function's `ctx.needs_input_grad` says which
    inputs require gradients, not which this backward was asked for, so without it oneDNN computed the weight
    and bias gradients and autograd threw them away (WGAN-GP's critic at 64 px: up to 30 ms of a 79 ms call)."""
    previous, _INPUT_GRADIENTS_ONLY[0] = _INPUT_GRADIENTS_ONLY[0], True
    try:
        yield
    finally:
        _INPUT_GRADIENTS_ONLY[0] = previous


GEMM_MAP_MAX = 8  # under deterministic algorithms, the GEMM computes the weight gradients of maps this small
_WGRAD_GEMM_WINS: dict[tuple, bool] = {}  # a layer's shapes -> whether the im2col GEMM was the faster


def _gemm_wgrad_wins(key: tuple, onednn, gemm, small_map: bool) -> bool:
    """Whether `gemm()` (the im2col GEMM) computes a layer's weight gradient faster than `onednn()` for these
    shapes, layouts, dtype and thread count: each timed twice the first time they are met (results thrown away, so
    every call of a process computes with one method), the answer kept for the process. Under torch's deterministic
    algorithms (train.deterministic) nothing is timed: the GEMM on a `small_map` (<= GEMM_MAP_MAX px), where
    oneDNN's ran far below the matmul peak on every CPU measured, and oneDNN elsewhere.

    Which is faster depends on the CPU, the precision, the batch and the map, and not in a way a rule could say:
    fp32, two Zen 3 cores, oneDNN's took 0.85x the GEMM's time for the 16 -> 8 px layer of DCGAN-32's D and for the
    64 -> 32 px one of DCGAN-128's at batch 64, 1.36x for DCGAN-64's 8 -> 4 px layer, and 1.3-1.8x for all but the
    RGB layers of the 300 px DCGAN at batch 16 (`python benchmarks/wgrad_methods.py`)."""
    if torch.are_deterministic_algorithms_enabled():
        return small_map
    wins = _WGRAD_GEMM_WINS.get(key)
    if wins is None:
        best = {gemm: math.inf, onednn: math.inf}
        for f in (gemm, onednn, gemm, onednn):
            start = time.perf_counter()
            f()
            best[f] = min(best[f], time.perf_counter() - start)
        wins = _WGRAD_GEMM_WINS[key] = best[gemm] < best[onednn]
    return wins


def _onednn_grads(grad_out, x, weight, bias_sizes, stride, padding, transposed: bool, mask):
    """oneDNN's gradients of a convolution with respect to (x, weight, bias), those `mask` asks for."""
    return torch.ops.aten.convolution_backward(grad_out, x, weight, bias_sizes, stride, padding, (1, 1), transposed,
                                               (0, 0), 1, mask)


def _gemm_grad_w(grad_out, x, weight, stride, padding, transposed: bool) -> torch.Tensor:
    """A convolution's weight gradient by `conv2d_weight_grad`: a transposed convolution's is that of the
    convolution it transposes, with input and output gradient swapped."""
    inp, out = (grad_out, x) if transposed else (x, grad_out)
    return conv2d_weight_grad(inp, out, weight.shape[2:], stride, padding)


def _wgrad_by_gemm(grad_out, x, weight, stride, padding, transposed: bool) -> bool:
    """Whether this weight gradient goes to the im2col GEMM: `_gemm_wgrad_wins` for its shapes, layouts, dtype and
    thread count, with both methods as `_CpuConv` and `_ConvInputGrad` call them."""
    key = (x.shape, x.stride(), grad_out.shape, grad_out.stride(), weight.shape, weight.stride(), stride, padding,
           transposed, x.dtype, torch.get_num_threads())
    out = x if transposed else grad_out
    return _gemm_wgrad_wins(
        key, lambda: _onednn_grads(grad_out, x, weight, None, stride, padding, transposed, (False, True, False)),
        lambda: _gemm_grad_w(grad_out, x, weight, stride, padding, transposed),
        small_map=max(out.shape[2:]) <= GEMM_MAP_MAX)


def _doubles(x: torch.Tensor, grad_out: torch.Tensor) -> bool:
    """Whether a convolution halves x's map exactly (its input gradient then has the phase form)."""
    return x.shape[2:] == tuple(2 * s for s in grad_out.shape[2:])


class _CpuConv(torch.autograd.Function):
    """conv2d / conv_transpose2d with this project's CPU paths, each on a switch; oneDNN computes the rest:

    - gemm: the weight gradient from `conv2d_weight_grad` (a transposed convolution's weight gradient is that of
      the convolution it transposes, with input and output gradient swapped) where it is the faster for these
      shapes (`_gemm_wgrad_wins`), else oneDNN's;
    - thin: the transposed convolution (forward) or the convolution's input gradient (backward) to few channels
      through `thin_conv_transpose2d`.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, transposed, gemm, thin):
        ctx.save_for_backward(x, weight)
        ctx.geometry = (stride, padding, transposed, bias is not None, gemm, thin)
        if transposed and thin:
            return thin_conv_transpose2d(x, weight, bias)
        conv = nn.functional.conv_transpose2d if transposed else nn.functional.conv2d
        return conv(x, weight, bias, stride, padding)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        stride, padding, transposed, has_bias, gemm, thin = ctx.geometry
        bias_sizes = [weight.shape[1 if transposed else 0]] if has_bias else None
        geometry = (stride, padding, transposed)
        if torch.is_grad_enabled():  # create_graph (WGAN-GP's penalty)
            if _INPUT_GRADIENTS_ONLY[0] and not transposed:  # d scores / d x, as a function with its own backward
                grad_x = _ConvInputGrad.apply(grad_out, weight, x, stride, padding, gemm, thin) \
                    if ctx.needs_input_grad[0] else None
                return grad_x, None, None, None, None, None, None, None
            # otherwise oneDNN's backward, which autograd differentiates
            mask = (ctx.needs_input_grad[0], False, False) if _INPUT_GRADIENTS_ONLY[0] else ctx.needs_input_grad[:3]
            return *_onednn_grads(grad_out, x, weight, bias_sizes, *geometry, mask), None, None, None, None, None
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        need_b = has_bias and need_b
        thin_x = need_x and thin and not transposed and _doubles(x, grad_out)
        gemm_w = need_w and gemm and _wgrad_by_gemm(grad_out, x, weight, *geometry)
        onednn_w = need_w and not gemm_w
        # oneDNN computes a bias gradient with its weight gradient: asked for the bias alone, it runs a whole
        # weight-gradient pass for it (input gradient of D's 8 -> 4 px layer, batch 64, fp32, one core: 18 ms,
        # 38 ms with the bias's), while the sum below takes 0.1-0.5 ms
        onednn_b = need_b and onednn_w
        grad_x, grad_w, grad_b = None, None, None
        if (need_x and not thin_x) or onednn_w:
            grad_x, grad_w, grad_b = _onednn_grads(grad_out, x, weight, bias_sizes, *geometry,
                                                   (need_x and not thin_x, onednn_w, onednn_b))
        if need_b and not onednn_b:
            grad_b = grad_out.sum((0, 2, 3))
        if thin_x:
            grad_x = thin_conv_transpose2d(grad_out, weight)
        if gemm_w:
            grad_w = _gemm_grad_w(grad_out, x, weight, *geometry)
        return grad_x, grad_w, grad_b, None, None, None, None, None


class _ConvInputGrad(torch.autograd.Function):
    """A convolution's input gradient as a function of (grad_out, weight), built by `_CpuConv` for the gradient
    penalty's d scores / d x (`input_gradients_only`), whose own backward is the penalty's path to the weights.

    Its backward, given gg (the penalty's gradient with respect to the input gradient): grad_out's gradient is
    conv2d(gg, weight), and the weight's is the weight gradient of a convolution of gg whose output gradient is
    grad_out, by the im2col GEMM or oneDNN as `_CpuConv` chooses (`_wgrad_by_gemm`). Autograd's derivative of
    oneDNN's convolution_backward computes that weight term as a convolution of permuted tensors instead: 7-70
    GFLOP/s against 80-90 for the same sums as a weight gradient (WGAN-GP's critic at 64 px, fp32, one Zen 3 core;
    README Performance). x gives the input's shape and layout only. Not differentiable again.
    """

    @staticmethod
    def forward(ctx, grad_out, weight, x, stride, padding, gemm, thin):
        ctx.save_for_backward(grad_out, weight)
        ctx.geometry = (stride, padding, gemm)
        if thin and _doubles(x, grad_out):
            return thin_conv_transpose2d(grad_out, weight)
        return _onednn_grads(grad_out, x, weight, None, stride, padding, False, (True, False, False))[0]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gg):
        grad_out, weight = ctx.saved_tensors
        stride, padding, gemm = ctx.geometry
        need_go, need_w = ctx.needs_input_grad[:2]
        d_go = nn.functional.conv2d(gg, weight, None, stride, padding) if need_go else None
        d_w = None
        if need_w:  # the weight gradient of a convolution of gg whose output gradient is grad_out
            if gemm and _wgrad_by_gemm(grad_out, gg, weight, stride, padding, False):
                d_w = _gemm_grad_w(grad_out, gg, weight, stride, padding, False)
            else:
                d_w = _onednn_grads(grad_out, gg, weight, None, stride, padding, False, (False, True, False))[1]
        return d_go, d_w, None, None, None, None, None


def cpu_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride, padding, transposed: bool,
             gemm: bool, thin: bool) -> torch.Tensor:
    """`_CpuConv` with autocast's casts applied by hand (autocast does not reach into custom functions)."""
    if torch.is_autocast_enabled("cpu"):
        dtype = torch.get_autocast_dtype("cpu")
        x, weight = x.to(dtype), weight.to(dtype)
        bias = bias.to(dtype) if bias is not None else None
    with torch.autocast("cpu", enabled=False):
        return _CpuConv.apply(x, weight, bias, tuple(stride), tuple(padding), transposed, gemm, thin)


def use_gemm_wgrad(model: nn.Module, on: bool) -> None:
    """Turn the im2col-GEMM weight gradient on (or off) for the `Conv2d` / `ConvTranspose2d` layers of `model`:
    each layer then computes its weight gradient with the GEMM or oneDNN, whichever was the faster at the first call
    of its shapes (`_gemm_wgrad_wins`; README Performance)."""
    for m in model.modules():
        if isinstance(m, _CpuPaths):
            m.gemm_wgrad = on


def use_thin_conv(model: nn.Module, on: bool) -> None:
    """Turn the phase forms on (or off) for the layers of `model` that have their geometry:
    `thin_conv_transpose2d` for a 4x4 stride-2 `ConvTranspose2d` to at most THIN_CHANNELS channels (its forward)
    and such a `Conv2d` from that many (its input gradient); `upsample_conv2d` for a `NearestUpsample` followed by
    a 3x3 `Conv2d` to at most THIN_CHANNELS channels (on G's hidden layers, 64 to 256 channels out, it was 3-45%
    slower)."""
    def plain(m: nn.Module, kernel: int, stride: int, padding: int) -> bool:
        return (m.groups == 1 and m.dilation == (1, 1) and not any(m.output_padding) and m.kernel_size == (kernel,) * 2
                and m.stride == (stride,) * 2 and m.padding == (padding,) * 2)

    for m in model.modules():
        if isinstance(m, _CpuPaths):
            channels = m.out_channels if isinstance(m, nn.ConvTranspose2d) else m.in_channels
            m.thin = on and channels <= THIN_CHANNELS and plain(m, 4, 2, 1)
        children = list(m.children())
        for up, conv in zip(children, children[1:]):
            if isinstance(up, NearestUpsample) and isinstance(conv, Conv2d):
                up.deferred = conv.upsampled_input = on and conv.out_channels <= THIN_CHANNELS and plain(conv, 3, 1, 1)


class NearestUpsample(nn.Upsample):
    """nn.Upsample(scale_factor=2, mode="nearest") that can leave its work to the `Conv2d` after it
    (`use_thin_conv`): then it passes its input on, and that convolution runs `upsample_conv2d`."""

    def __init__(self):
        super().__init__(scale_factor=2, mode="nearest")
        self.deferred = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.deferred else super().forward(x)


class _CpuPaths:
    """What `Conv2d` and `ConvTranspose2d` share: the switches of `_CpuConv`, `gemm_wgrad` (`use_gemm_wgrad`) and
    `thin` (`use_thin_conv`), which apply to CPU forwards that need gradients."""

    gemm_wgrad = False
    thin = False

    def _use_cpu_conv(self, x: torch.Tensor) -> bool:
        """Whether this forward goes through `_CpuConv`: on a CPU, gradients needed, a switch on."""
        return (self.gemm_wgrad or self.thin) and x.device.type == "cpu" and torch.is_grad_enabled()


class Conv2d(_CpuPaths, nn.Conv2d):
    """nn.Conv2d (same parameters, same results) with the CPU paths of `_CpuConv`.

    With `gemm_wgrad` set (`use_gemm_wgrad`), its weight gradient is the im2col GEMM's or oneDNN's, whichever
    was the faster for its shapes (`_gemm_wgrad_wins`; oneDNN's runs far below the matmul peak on small maps, e.g.
    D's 8 -> 4 px layer: 54 ms against 13 ms as a GEMM, bf16, one core; README Performance), while oneDNN's
    forward and input gradient are fine; a kernel as large as its input map (D's score and class layers) is then
    `whole_map_conv2d`, a matrix product. With `thin` set (`use_thin_conv`: D's RGB input layer), its input gradient is
    `thin_conv_transpose2d`. Both apply to CPU forwards that need gradients; under autocast, inputs are
    cast as autocast casts a convolution's. The WGAN-GP penalty's input gradient is a `_ConvInputGrad`, whose
    backward takes the same weight-gradient paths. With `upsampled_input` (`use_thin_conv`: G's RGB output layer after a
    `NearestUpsample`), every forward takes the map before upsampling and runs `upsample_conv2d`.
    """

    upsampled_input = False  # set with the `NearestUpsample` before it: x is the map before upsampling

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if self.upsampled_input:
            return upsample_conv2d(x, weight, bias)
        if not self._use_cpu_conv(x):
            return super()._conv_forward(x, weight, bias)
        if (self.gemm_wgrad and x.shape[2:] == weight.shape[2:] and self.padding == (0, 0) and self.groups == 1
                and self.dilation == (1, 1)):
            return whole_map_conv2d(x, weight, bias)
        return cpu_conv(x, weight, bias, self.stride, self.padding, False, self.gemm_wgrad, self.thin)


class ConvTranspose2d(_CpuPaths, nn.ConvTranspose2d):
    """nn.ConvTranspose2d (same parameters, same results) with the CPU paths of `_CpuConv`.

    `gemm_wgrad` as `Conv2d`'s; besides, the generator's first
    layer (1x1 input, stride 1, no padding) is then a matrix product z @ W (oneDNN took 15 ms per step for
    it, 64 images, bf16, one core). With `thin` set (`use_thin_conv`: G's RGB output layer), its forward,
    with or without gradients, is `thin_conv_transpose2d`. Used without output_padding (as G does).
    """

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:
        if x.device.type != "cpu" or output_size is not None or any(self.output_padding):
            return super().forward(x, output_size)
        if self.thin and not torch.is_grad_enabled():
            return thin_conv_transpose2d(x, self.weight, self.bias)
        if not self._use_cpu_conv(x):
            return super().forward(x, output_size)
        if self.gemm_wgrad and x.shape[2:] == (1, 1) and self.stride == (1, 1) and self.padding == (0, 0):
            w = self.weight
            if w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous():
                # out in the weight's layout, as the layers after it have theirs (a mixed pair of grad and saved
                # output made ReLU's backward 10x slower, [64, 512, 4, 4], one core)
                k = w.permute(0, 2, 3, 1)  # [Cin, kh, kw, Cout]: contiguous, a view
                y = (x.flatten(1) @ k.reshape(k.shape[0], -1)).view(-1, *k.shape[1:]).permute(0, 3, 1, 2)
            else:
                y = (x.flatten(1) @ w.flatten(1)).unflatten(1, w.shape[1:])
            return y if self.bias is None else y + self.bias.to(y.dtype)[:, None, None]
        return cpu_conv(x, self.weight, self.bias, self.stride, self.padding, True, self.gemm_wgrad, self.thin)
