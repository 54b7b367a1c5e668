"""Learning-rate schedules: the rate of each epoch, from large steps to small ones.

A schedule is any callable ``schedule(epoch) -> lr`` with ``epoch`` counted from
0 within one ``fit`` call. The named schedules take the base ``lr`` of ``fit``.
"""

import math
import numbers


class Constant:
    """lr every epoch."""

    def __init__(self, lr):
        self.lr = lr

    def __call__(self, epoch):
        return self.lr


class StepDecay:
    """lr * gamma ** (epoch // step_size): drops by `gamma` every `step_size` epochs."""

    def __init__(self, lr, step_size=10, gamma=0.5):
        self.lr, self.step_size, self.gamma = lr, step_size, gamma

    def __call__(self, epoch):
        return self.lr * self.gamma ** (epoch // self.step_size)


class ExponentialDecay:
    """lr * gamma ** epoch."""

    def __init__(self, lr, gamma=0.9):
        self.lr, self.gamma = lr, gamma

    def __call__(self, epoch):
        return self.lr * self.gamma ** epoch


class InverseScaling:
    """lr / (epoch + 1) ** power_t (scikit-learn's 'invscaling', counted in epochs)."""

    def __init__(self, lr, power_t=0.5):
        self.lr, self.power_t = lr, power_t

    def __call__(self, epoch):
        return self.lr / (epoch + 1) ** self.power_t


class Cosine:
    """lr_min + (lr - lr_min) * (1 + cos(pi * epoch / epochs)) / 2: from lr down towards lr_min."""

    def __init__(self, lr, epochs, lr_min=0.0):
        self.lr, self.epochs, self.lr_min = lr, epochs, lr_min

    def __call__(self, epoch):
        return self.lr_min + (self.lr - self.lr_min) * (1 + math.cos(math.pi * epoch / self.epochs)) / 2


SCHEDULES = ("constant", "step", "exponential", "invscaling", "cosine")


def make_schedule(lr_schedule, lr, epochs):
    """The callable epoch -> lr for fit's `lr_schedule` argument (a name or a callable)."""
    if callable(lr_schedule):
        return lr_schedule
    if not isinstance(lr_schedule, str):
        raise TypeError(f"lr_schedule must be one of {SCHEDULES} or a callable epoch -> lr, "
                        f"got {type(lr_schedule).__name__}")
    if lr_schedule == "constant":
        return Constant(lr)
    if lr_schedule == "step":
        return StepDecay(lr)
    if lr_schedule == "exponential":
        return ExponentialDecay(lr)
    if lr_schedule == "invscaling":
        return InverseScaling(lr)
    if lr_schedule == "cosine":
        return Cosine(lr, epochs)
    raise ValueError(f"unknown lr_schedule {lr_schedule!r}; expected one of {SCHEDULES} "
                     f"or a callable epoch -> lr")


def checked_lr(value, epoch):
    """The schedule's value for `epoch` as a float, or a ValueError naming what is wrong."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"lr_schedule returned {value!r} for epoch {epoch}; expected a real number")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"lr_schedule returned lr={value!r} for epoch {epoch}; "
                         f"the learning rate must be finite and > 0")
    return value
