"""Adversarial losses: discriminator outputs (logits or scores) -> D and G losses.

A loss object is stateless; the training loop calls `d_loss` in D phases and `g_loss` in G phases.
`swap=True` asks for the noisy-label variant (real labelled fake and fake labelled real, seed 000).

- `bce`: classic GAN (seed 000 "classic", DCGAN paper). D minimises -(log D(x) + log(1 - D(G(z)))),
  G the non-saturating -log D(G(z)). `real_target` < 1 is one-sided label smoothing (with `fake_target` > 0 and
  `g_target` < 1, two-sided: seed 000's code); `label_noise` > 0 draws
  each image's target at random near its label, for D and G (seed 004).
- `wgan`: Wasserstein critic (Arjovsky et al., seeds 000/004): D minimises mean C(G(z)) - mean C(x),
  G minimises -mean C(G(z)); the Lipschitz constraint comes from weight clipping (`clip_weights`).
- `wgan_gp`: the same losses; the constraint is the gradient penalty (`gradient_penalty`, seed 002).
- `hinge`: D minimises mean relu(1 - D(x)) + mean relu(1 + D(G(z))), G minimises -mean D(G(z)).
- `relativistic` (an option of bce and hinge, Jolicoeur-Martineau 2018, "relativistic average"): every score
  is taken relative to the other side's mean, r = D(x) - mean D(G(z)) and f = D(G(z)) - mean D(x); D's loss is
  the base loss of (r, f), G's the base loss with the roles swapped, so G also learns from the real scores.

The auxiliary classifier loss of ACGAN (`aux_loss`) is cross-entropy on logits: no softmax before it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gankit import distributed
from gankit.models.layers import input_gradients_only


def relative_scores(real_out: torch.Tensor, fake_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each real score less the fakes' mean, each fake score less the reals' mean: > 0 means "more real than the
    other side", whatever offset the scores drift to (losses that see only differences leave it free)."""
    real_out, fake_out = real_out.float(), fake_out.float()
    return real_out - fake_out.mean(), fake_out - real_out.mean()


class _SidedLoss:
    """A loss whose D loss is the sum of its two sides, `d_side` of the real batch and of the fakes (`train.d_split`
    updates D on each side alone)."""

    def d_side(self, out: torch.Tensor, real: bool, swap: bool = False) -> torch.Tensor:
        raise NotImplementedError

    def d_loss(self, real_out: torch.Tensor, fake_out: torch.Tensor, swap: bool = False) -> torch.Tensor:
        return self.d_side(real_out, True, swap) + self.d_side(fake_out, False, swap)

    def judged(self, real_out: torch.Tensor, fake_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """D's scores as this loss judges them, > 0 meaning "real": what D's accuracy and ADA's overfitting measure
        (the sign of D's real scores) read. Raw for losses with a fixed zero (bce's logits, hinge's margins)."""
        return real_out, fake_out


class BCELoss(_SidedLoss):
    name = "bce"
    wasserstein = False
    needs_real_for_g = False

    def __init__(self, real_target: float = 1.0, label_noise: float = 0.0, fake_target: float = 0.0,
                 g_target: float = 1.0):
        self.real_target, self.fake_target, self.g_target = real_target, fake_target, g_target
        self.label_noise = label_noise

    def targets(self, swap: bool = False) -> tuple[float, float]:
        """(target for real images, target for fakes) of a D step, before label noise."""
        return (self.fake_target, self.real_target) if swap else (self.real_target, self.fake_target)

    def _target(self, out: torch.Tensor, value: float) -> torch.Tensor:
        """The BCE target of each image: `value`, moved towards 0.5 by label_noise x U(0, 1) drawn per image (seed
        004: real 1 - 0.2 U, fake 0.2 U), the same draw for an image whatever the number of DDP processes."""
        if not self.label_noise:
            return torch.full_like(out, value)
        u = distributed.per_sample(lambda n: torch.rand(n, device=out.device), out.shape[0]).view_as(out)
        return value - self.label_noise * u if value > 0.5 else value + self.label_noise * u

    def d_side(self, out: torch.Tensor, real: bool, swap: bool = False) -> torch.Tensor:
        """The part of D's loss on the real (`real`) or the fake batch: `d_loss` is their sum."""
        out = out.float()
        return F.binary_cross_entropy_with_logits(out, self._target(out, self.targets(swap)[0 if real else 1]))

    def g_loss(self, fake_out: torch.Tensor, real_out: torch.Tensor | None = None) -> torch.Tensor:
        fake_out = fake_out.float()
        return F.binary_cross_entropy_with_logits(fake_out, self._target(fake_out, self.g_target))


class WassersteinLoss(_SidedLoss):
    name = "wgan"
    wasserstein = True
    needs_real_for_g = False

    def d_side(self, out: torch.Tensor, real: bool, swap: bool = False) -> torch.Tensor:
        """-mean C(x) for the real batch, mean C(G(z)) for the fakes (signs exchanged by `swap`)."""
        return (-1.0 if real != swap else 1.0) * out.float().mean()

    def g_loss(self, fake_out: torch.Tensor, real_out: torch.Tensor | None = None) -> torch.Tensor:
        return -fake_out.float().mean()

    def judged(self, real_out: torch.Tensor, fake_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A critic's scores have no zero (adding a constant changes no loss): each against the other side's mean."""
        return relative_scores(real_out, fake_out)


class HingeLoss(_SidedLoss):
    name = "hinge"
    wasserstein = False
    needs_real_for_g = False

    def d_side(self, out: torch.Tensor, real: bool, swap: bool = False) -> torch.Tensor:
        """mean relu(1 - D(x)) for the real batch, mean relu(1 + D(G(z))) for the fakes (exchanged by `swap`)."""
        return F.relu(1 - out.float() if real != swap else 1 + out.float()).mean()

    def g_loss(self, fake_out: torch.Tensor, real_out: torch.Tensor | None = None) -> torch.Tensor:
        return -fake_out.float().mean()


class RelativisticAverage:
    """A bce or hinge loss made relativistic-average (RaSGAN / RaHingeGAN). G's loss needs D's scores of a
    real batch (`real_out`, no gradient needed: they do not depend on G)."""

    wasserstein = False
    needs_real_for_g = True

    def __init__(self, base):
        self.base, self.name = base, f"ra_{base.name}"

    judged = staticmethod(relative_scores)  # the loss sees nothing else: a raw score's offset drifts freely

    def d_loss(self, real_out: torch.Tensor, fake_out: torch.Tensor, swap: bool = False) -> torch.Tensor:
        return self.base.d_loss(*relative_scores(real_out, fake_out), swap=swap)

    def g_loss(self, fake_out: torch.Tensor, real_out: torch.Tensor | None = None) -> torch.Tensor:
        if real_out is None:
            raise ValueError("a relativistic G loss needs D's scores of a real batch (real_out)")
        r, f = relative_scores(real_out.detach(), fake_out)
        return self.base.d_loss(f, r)  # the D loss with real and fake exchanged: fakes pushed above the reals' mean


def accuracy(real_out: torch.Tensor, fake_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Fraction of real images D scores as real (> 0) and of fakes it scores as fake (< 0); device tensors."""
    return (real_out > 0).float().mean(), (fake_out < 0).float().mean()


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Gulrajani et al. 2017: E[(||grad_x C(x_hat)||_2 - 1)^2] on x_hat = e x + (1 - e) G(z), e ~ U(0, 1) per sample.

    `critic(x)` returns the scores [N]. The graph is kept (create_graph) so the penalty trains the critic.
    """
    eps = distributed.per_sample(lambda n: torch.rand(n, 1, 1, 1, device=real.device, dtype=real.dtype), real.shape[0])
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    scores = critic(x_hat)
    with input_gradients_only():  # the critic's CPU convolutions: d scores / d x_hat only, not the weights'
        (grad,) = torch.autograd.grad(scores.float().sum(), x_hat, create_graph=True)
    return (grad.float().flatten(1).norm(2, dim=1) - 1).pow(2).mean()


def aux_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """ACGAN auxiliary classification loss: cross-entropy on the classifier's logits."""
    return F.cross_entropy(logits.float(), labels)


def aux_stats(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(accuracy of the auxiliary classifier, mean entropy of its predicted class distribution) — seed 002
    tracks both to detect failure. Device tensors, no host sync."""
    logits = logits.detach().float()
    acc = (logits.argmax(1) == labels).float().mean()
    logp = F.log_softmax(logits, dim=1)
    entropy = -(logp.exp() * logp).sum(1).mean()
    return acc, entropy


@torch.no_grad()
def clip_weights(module: torch.nn.Module, c: float) -> None:
    """WGAN weight clipping: every parameter of the critic into [-c, c] (seeds 000/004: c = 0.01)."""
    for p in module.parameters():
        p.clamp_(-c, c)


def build_loss(cfg):
    t = cfg.train
    if t.loss == "bce":
        s = t.label_smoothing
        if t.label_smoothing_two_sided:  # seed 000's BCEsmooth: every target t becomes t (1 - s) + s / 2, G's too
            loss = BCELoss(real_target=1 - s / 2, fake_target=s / 2, g_target=1 - s / 2, label_noise=t.label_noise)
        else:
            loss = BCELoss(real_target=1 - s, label_noise=t.label_noise)
    elif t.loss in ("wgan", "wgan_gp"):
        loss = WassersteinLoss()
        loss.name = t.loss
    elif t.loss == "hinge":
        loss = HingeLoss()
    else:
        raise ValueError(t.loss)
    return RelativisticAverage(loss) if t.relativistic else loss
