"""Exceptions raised by fastmlp."""


class DivergenceError(FloatingPointError):
    """Training produced NaN or infinite values; the model was restored to its last good state."""

    def __init__(self, epoch, lr):
        self.epoch = epoch
        self.lr = lr
        super().__init__(
            f"training diverged in epoch {epoch}: the loss or the parameters became NaN or "
            f"infinite at learning rate {lr:g}; the parameters from before that epoch were "
            f"restored. Try a lower learning rate (e.g. lr={lr / 10:g}).")


class ModelFileError(ValueError):
    """A file given to fastmlp.load is not a valid, intact fastmlp model."""
