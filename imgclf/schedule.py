"""The one-cycle schedule of learning rate and momentum (Smith; fastai's fit_one_cycle)."""

import math
from dataclasses import dataclass

FINAL_DIV = 1e4  # the rate ends at max_lr / (div_factor * FINAL_DIV): practically zero


@dataclass
class OneCycle:
    total_steps: int
    div_factor: float = 25.0
    pct_start: float = 0.3
    moms: tuple[float, float] = (0.95, 0.85)

    def __call__(self, step: int, max_lr: float) -> tuple[float, float]:
        """(learning rate, momentum) at `step` of `total_steps`, for a peak rate of `max_lr`.

        For pct_start of the steps the rate rises linearly from max_lr/div_factor to max_lr while
        the momentum falls linearly from moms[0] to moms[1]; then the rate falls to ~0 and the
        momentum rises back to moms[0], both along a cosine.
        """
        warmup = max(1, round(self.pct_start * self.total_steps))
        start_lr = max_lr / self.div_factor
        if step < warmup:
            progress = step / warmup
            return (
                start_lr + (max_lr - start_lr) * progress,
                self.moms[0] + (self.moms[1] - self.moms[0]) * progress,
            )
        progress = (step - warmup) / max(1, self.total_steps - 1 - warmup)
        cosine = (1 + math.cos(math.pi * min(progress, 1.0))) / 2  # 1 -> 0
        end_lr = start_lr / FINAL_DIV
        return (
            end_lr + (max_lr - end_lr) * cosine,
            self.moms[0] + (self.moms[1] - self.moms[0]) * cosine,
        )
