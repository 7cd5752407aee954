"""Divergence: a non-finite loss, or a total loss that explodes, stops training, naming the step and the term,
so that a run never writes a checkpoint after a bad step.

The check runs on the device every step without a host sync: the guard keeps, per loss term, a
running mean and the first step at which that term went wrong, as tensors. The loop reads them
(`check`, one copy to the host) where it syncs anyway — logging and progress steps — and before
every checkpoint, so a checkpoint never holds the weights of a diverged step: the last one written
is the last good one. On the CPU the loop checks every step (a sync costs nothing there).

"Explodes": the total loss above `factor` × its running mean (an exponential mean over about 50
steps, from step `warmup` on). The loss terms of Eq. 1 are bounded at sane weights (Wing is
linear in fractions of the input side, the pose L1 ≤ 180°, LPMC ≤ s·2 + log(classes)), so a
worst-case batch stays within ~40× the converged mean; 100× is a run that has left the rails.
"""

from __future__ import annotations

import torch

NEVER = torch.iinfo(torch.int64).max
EQ1_TERMS = ("fr", "fld", "hpe", "blink", "vis")  # the terms L_total sums (weighted), named first


class Diverged(RuntimeError):
    """Training stopped at a non-finite or exploding loss; the message names the step and the term."""


class DivergenceGuard:
    def __init__(self, factor: float | None = 100.0, warmup: int = 20, decay: float = 0.98):
        self.factor, self.warmup, self.decay = factor, warmup, decay
        self.names: list[str] = []
        self.seen = 0

    def observe(self, step: int, losses: dict[str, torch.Tensor]) -> None:
        """Record one step's losses (the loop's detached dict); device ops only, no host sync."""
        v = torch.stack([t.detach().float().reshape(()) for t in losses.values()])
        if not self.names:
            self.names = list(losses)
            self.first_nan = torch.full(v.shape, NEVER, dtype=torch.int64, device=v.device)  # per term
            self.first_explosion = torch.full((), NEVER, dtype=torch.int64, device=v.device)
            self.at_first = torch.zeros_like(v)  # every term at the first bad step
            self.mean = torch.where(torch.isfinite(v), v, torch.zeros_like(v))  # running means
        nan = ~torch.isfinite(v)
        explode = torch.zeros((), dtype=torch.bool, device=v.device)
        if self.factor is not None and self.seen >= self.warmup and "loss" in self.names:
            i = self.names.index("loss")
            explode = v[i].abs() > self.factor * self.mean[i].abs()
        fresh = (nan.any() | explode) & (self.first_nan.min() == NEVER) & (self.first_explosion == NEVER)
        self.at_first = torch.where(fresh, v, self.at_first)
        self.first_nan = torch.where(nan & (self.first_nan == NEVER), step, self.first_nan)
        self.first_explosion = torch.where(explode & (self.first_explosion == NEVER), step, self.first_explosion)
        good = ~(nan.any() | explode)
        self.mean = torch.where(good, self.decay * self.mean + (1 - self.decay) * v, self.mean)
        self.seen += 1

    def first_bad_step(self) -> int:
        """The first step with a non-finite or exploding loss, or NEVER (one host sync)."""
        if not self.names:
            return NEVER
        return min(int(self.first_nan.min()), int(self.first_explosion))

    def check(self) -> None:
        """Raise `Diverged` naming the first bad step and its term (one host sync)."""
        if not self.names:
            return
        first_nan, first_explosion = self.first_nan.tolist(), int(self.first_explosion)
        step = min(min(first_nan), first_explosion)
        if step == NEVER:
            return
        value = dict(zip(self.names, self.at_first.tolist(), strict=True))
        mean = dict(zip(self.names, self.mean.tolist(), strict=True))
        if min(first_nan) == step:
            bad = [n for n, s in zip(self.names, first_nan, strict=True) if s == step]
            bad.sort(key=lambda n: (n not in EQ1_TERMS, n == "loss"))  # a task's term first, the total last
            also = f" (also {', '.join(f'{n} {value[n]}' for n in bad[1:])})" if bad[1:] else ""
            raise Diverged(f"step {step}: the loss term {bad[0]} is {value[bad[0]]}{also}; training stopped")
        rise = {n: abs(value[n]) / max(abs(mean[n]), 1e-12) for n in self.names if n in EQ1_TERMS}
        top = max(rise, key=rise.get) if rise else "loss"
        raise Diverged(f"step {step}: the loss exploded: loss {value['loss']:.4g} > {self.factor:g} × its running "
                       f"mean {mean['loss']:.4g}; the term that rose most: {top} {value[top]:.4g} "
                       f"({rise.get(top, 1):.3g}× its running mean); training stopped")  # fmt: skip
