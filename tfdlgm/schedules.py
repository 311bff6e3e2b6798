"""Per-epoch learning-rate schedules, for `keras.callbacks.LearningRateScheduler`."""

import math

from tfdlgm import validation


class StagedDecay:
    """The learning rate of Burda, Grosse & Salakhutdinov (2015, sec. 5): stages whose lengths
    grow geometrically, the rate falling by a constant factor from one to the next.

    ```none
    stage i = 0, 1, ..., I - 1:  g^i epochs, from epoch (g^i - 1) / (g - 1)
    lr_e = base * d^i            for epoch e in stage i (stage I - 1 from its start on)
    ```

    Burda et al. train their VAEs and IWAEs for 3,280 epochs with base = 1e-3, d = 10^(-1/7),
    g = 3 and I = 8, the defaults: 1e-3 for epoch 0, 7.2e-4 for epochs 1-3, ..., 1e-4 for
    epochs 1,093-3,279. The rate depends on the (0-based) epoch alone, so a run resumed with
    `fit(initial_epoch=e)` continues the schedule where it stopped:

    ```python
    model.fit(data, epochs=3280, callbacks=[keras.callbacks.LearningRateScheduler(StagedDecay())])
    ```

    Args:
        base: float > 0, the rate of stage 0. Defaults to `1e-3`.
        decay: float > 0, d, the factor from one stage's rate to the next's. Defaults to
            `10 ** (-1 / 7)`.
        growth: int >= 2, g, the factor from one stage's length to the next's. Defaults to `3`.
        stages: int >= 1, I. Defaults to `8`.
    """

    def __init__(self, base=1e-3, decay=10 ** (-1 / 7), growth=3, stages=8):
        for name, value in (("base", base), ("decay", decay)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"`{name}` must be a positive float. Received: {name}={value!r}")
            if not math.isfinite(value):
                raise ValueError(f"`{name}` must be finite. Received: {name}={value!r}")
        self.growth = validation.check_positive_int(growth, "growth")
        if self.growth < 2:
            raise ValueError(f"`growth` must be an int >= 2. Received: growth={growth!r}")
        self.stages = validation.check_positive_int(stages, "stages")
        self.base, self.decay = float(base), float(decay)

    def stage_start(self, i):
        """The first epoch of stage `i`: the epochs of stages 0 ... i - 1."""
        return (self.growth**i - 1) // (self.growth - 1)

    def stage(self, epoch):
        """The stage of the 0-based `epoch` (the last stage from its start on)."""
        epoch = validation.check_nonnegative_int(epoch, "epoch")
        i = 0
        while i < self.stages - 1 and epoch >= self.stage_start(i + 1):
            i += 1
        return i

    def __call__(self, epoch, learning_rate=None):
        """lr for the 0-based `epoch`; `learning_rate` (the current one, which
        `LearningRateScheduler` passes) is not used."""
        return self.base * self.decay ** self.stage(epoch)

    def changes(self, start, stop):
        """`[[epoch, rate], ...]`: the rate at `start` and at each epoch in `(start, stop)`
        where it changes, i.e. what a run over epochs `start ... stop - 1` trained at."""
        start = validation.check_nonnegative_int(start, "start")
        stop = validation.check_nonnegative_int(stop, "stop")
        if stop <= start:
            return []
        starts = (self.stage_start(i) for i in range(self.stage(start) + 1, self.stages))
        return [[start, self(start)]] + [[e, self(e)] for e in starts if e < stop]
