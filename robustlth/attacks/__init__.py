"""L-inf attacks on [0, 1] inputs with ε as a pixel budget.

`Attack` owns the contract: the model runs in an explicit mode while the attack is generated and is put
back in its previous mode afterwards; results are always valid images. The single-step methods are PGD
with fixed settings, so there is one inner loop to keep fast.

Two registries name them: `ATTACKS` (the attack classes; the fixed-name evaluation attacks of
`attack_from_spec`) and `TRAINING_ATTACKS` (AttackConfig.attack -> the attack that makes training examples;
AttackConfig's validation and the --attack help read it).
"""
from __future__ import annotations

import re
from abc import ABC, abstractmethod
from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError  # not from ..config: AttackConfig's validation reads this module's registry
from ..registry import Registry


def ce_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # Summed so each sample's gradient does not depend on the batch size.
    return F.cross_entropy(logits.float(), y, reduction="sum")


def cw_margin_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Sum over the batch of max_{j != y} z_j - z_y (Carlini-Wagner margin, L-inf PGD form)."""
    logits = logits.float()
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(1)
    return (other - true).sum()


LOSSES = {"ce": ce_loss, "cw": cw_margin_loss}


class Attack(ABC):
    """Base contract. Subclasses implement `perturb`; callers use `attack(model, x, y)`."""

    name = "attack"

    def __init__(self, eps: float, model_mode: str = "eval"):
        if not 0.0 <= eps <= 1.0:
            raise ConfigError(f"invalid eps={eps!r}: expected a pixel budget in [0, 1]")
        if model_mode not in ("eval", "train"):
            raise ConfigError(f"invalid model_mode={model_mode!r}: expected eval or train")
        self.eps, self.model_mode = eps, model_mode

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
        was_training = model.training
        model.train(self.model_mode == "train")
        # Only input gradients are needed: freezing the weights lets autograd skip their backward work.
        frozen = [p for p in model.parameters() if p.requires_grad]
        for p in frozen:
            p.requires_grad_(False)
        try:
            with torch.enable_grad():
                return self.perturb(model, x, y, generator).detach()
        finally:
            for p in frozen:
                p.requires_grad_(True)
            model.train(was_training)

    @abstractmethod
    def perturb(self, model, x, y, generator) -> torch.Tensor:
        """The adversarial images for (x, y); called with gradients enabled and the model in its attack mode."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(eps={self.eps:.5f}, mode={self.model_mode})"


ATTACKS: Registry[type[Attack]] = Registry("attack")


@ATTACKS.register("pgd")
class PGD(Attack):
    """Projected sign-gradient ascent (Madry et al.), with random start and restarts.

    `init_radius` is the half-width of the uniform random start (default ε); `project=False` keeps only the
    [0, 1] box (N-FGSM). With restarts, each point keeps the first restart that fools the model.
    """

    name = "pgd"

    def __init__(self, eps: float, steps: int = 10, step_size: Optional[float] = None, random_start: bool = True,
                 restarts: int = 1, loss: str = "ce", model_mode: str = "eval",
                 init_radius: Optional[float] = None, project: bool = True):
        super().__init__(eps, model_mode)
        if steps < 1 or restarts < 1:
            raise ConfigError(f"invalid steps={steps}/restarts={restarts}: expected integers >= 1")
        if loss not in LOSSES:
            raise ConfigError(f"invalid loss={loss!r}: expected one of {', '.join(LOSSES)}")
        self.steps, self.restarts = steps, restarts
        self.step_size = eps / 4 if step_size is None else step_size
        self.random_start = random_start
        self.init_radius = eps if init_radius is None else init_radius
        self.project = project
        self.loss_fn = LOSSES[loss]

    def perturb(self, model, x, y, generator):
        # Per-pixel bounds on delta, computed once: the ε-ball intersected with the [0, 1] box.
        lo, hi = -x, 1 - x
        if self.project:
            lo, hi = lo.clamp(min=-self.eps), hi.clamp(max=self.eps)
        if self.restarts == 1:
            return x + self._run(model, x, y, lo, hi, generator)
        best = x.clone()
        fooled = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        for _ in range(self.restarts):
            x_adv = x + self._run(model, x, y, lo, hi, generator)
            with torch.no_grad():
                now = model(x_adv).argmax(1) != y
            # Points not fooled so far take this try (their first success, or simply the latest try).
            best = torch.where(fooled[:, None, None, None], best, x_adv)
            fooled |= now
        return best

    def _run(self, model, x, y, lo, hi, generator) -> torch.Tensor:
        if self.random_start:
            noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            delta = ((2 * noise - 1) * self.init_radius).clamp_(lo, hi)
        else:
            delta = torch.zeros_like(x)
        for _ in range(self.steps):
            delta.requires_grad_(True)
            loss = self.loss_fn(model(x + delta), y)
            grad, = torch.autograd.grad(loss, delta)  # input gradient only: no weight gradients computed
            delta = (delta.detach() + self.step_size * grad.sign()).clamp_(lo, hi)
        return delta


@ATTACKS.register("fgsm")
class FGSM(PGD):
    """One step of size ε from the clean point (Goodfellow et al.)."""
    name = "fgsm"

    def __init__(self, eps: float, model_mode: str = "eval", step_size: Optional[float] = None):
        super().__init__(eps, steps=1, step_size=eps if step_size is None else step_size, random_start=False,
                         model_mode=model_mode)


@ATTACKS.register("fgsm_rs")
class FGSMRS(PGD):
    """FGSM from a uniform random start with step 1.25ε, projected to the ball (Wong et al., fast AT)."""
    name = "fgsm_rs"

    def __init__(self, eps: float, model_mode: str = "eval", step_size: Optional[float] = None):
        super().__init__(eps, steps=1, step_size=1.25 * eps if step_size is None else step_size,
                         random_start=True, model_mode=model_mode)


@ATTACKS.register("nfgsm")
class NFGSM(PGD):
    """N-FGSM (de Jorge et al.): noise uniform in ±2ε, one step of ε, no projection to the ε-ball."""
    name = "nfgsm"

    def __init__(self, eps: float, model_mode: str = "eval", step_size: Optional[float] = None):
        super().__init__(eps, steps=1, step_size=eps if step_size is None else step_size, random_start=True,
                         init_radius=2 * eps, project=False, model_mode=model_mode)


@ATTACKS.register("cw")
class CWPGD(PGD):
    """PGD on the CW margin loss."""
    name = "cw"

    def __init__(self, eps: float, steps: int = 30, step_size: Optional[float] = None, restarts: int = 1,
                 model_mode: str = "eval"):
        super().__init__(eps, steps=steps, step_size=step_size, random_start=True, restarts=restarts, loss="cw",
                         model_mode=model_mode)


_SPEC = re.compile(r"^(pgd|cw)(\d+)?(?:x(\d+))?$")


def _fixed_names() -> list[str]:
    """The evaluation attacks named as they are (the others are pgdK[xR] and cw[K][xR])."""
    return [n for n in ATTACKS if not _SPEC.match(n)]


def attack_from_spec(spec: str, eps: float) -> Attack:
    """Evaluation attacks by name: fgsm, fgsm_rs, nfgsm (any registered attack built from ε alone), pgdK[xR]
    (K steps, R restarts, step ε/4, random start), cw[K][xR] (CW-margin PGD, default 30 steps)."""
    m = _SPEC.match(spec)
    if spec in ATTACKS and not m:
        return ATTACKS[spec](eps)
    if not m:
        raise ConfigError(f"unknown attack {spec!r}: expected {', '.join(_fixed_names())}, pgdK[xR] (e.g. pgd20, "
                          "pgd100x5), cw[K][xR], autoattack, or ta-NAME for a torchattacks attack")
    kind, steps, restarts = m.group(1), m.group(2), int(m.group(3) or 1)
    if kind == "pgd":
        if steps is None:
            raise ConfigError(f"attack {spec!r} needs a step count, e.g. pgd20")
        return PGD(eps, steps=int(steps), restarts=restarts)
    return CWPGD(eps, steps=int(steps or 30), restarts=restarts)


# AttackConfig.attack -> a function of the AttackConfig giving the attack that makes training examples (None:
# natural training). A new training attack is one registered function.
TRAINING_ATTACKS: Registry[Callable[..., Optional[Attack]]] = Registry("training attack")


@TRAINING_ATTACKS.register("none")
def _natural(cfg) -> None:
    return None


def _single_step(cls: type[Attack]) -> Callable[..., Attack]:
    def build(cfg) -> Attack:
        return cls(cfg.eps, model_mode=cfg.attack_model_mode, step_size=cfg.attack_step_size)
    return build


TRAINING_ATTACKS.register("fgsm", _single_step(FGSM))
TRAINING_ATTACKS.register("fgsm_rs", _single_step(FGSMRS))
TRAINING_ATTACKS.register("nfgsm", _single_step(NFGSM))


@TRAINING_ATTACKS.register("pgd")
def _pgd(cfg) -> Attack:
    return PGD(cfg.eps, steps=cfg.attack_steps, step_size=cfg.attack_step_size, random_start=True,
               model_mode=cfg.attack_model_mode)


def training_attack(cfg) -> Optional[Attack]:
    """The attack that generates training examples for an AttackConfig `cfg` (None for natural training)."""
    return TRAINING_ATTACKS[cfg.attack](cfg)


__all__ = ["Attack", "PGD", "FGSM", "FGSMRS", "NFGSM", "CWPGD", "ATTACKS", "TRAINING_ATTACKS", "attack_from_spec",
           "training_attack", "ce_loss", "cw_margin_loss"]
