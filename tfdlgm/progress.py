"""Progress of long jobs (bounds, log-likelihood, imputation) with Keras' `verbose`.

```none
verbose = 0        silent
verbose = 1        a progress bar: done / total, time left, time per unit (keras.utils.Progbar)
verbose = 2        one line when the job ends: total, time taken, time per unit
verbose = "auto"   1 when standard output is a terminal, else 0
```

Keras' `fit` resolves `"auto"` to 1 everywhere; here it is 1 only in a terminal, so that logs,
pipes and tests stay quiet unless asked.
"""

from __future__ import annotations

import sys

import keras
from keras import ops

VERBOSITIES = (0, 1, 2, "auto")


def check_verbose(verbose) -> int:
    """`verbose` resolved to 0, 1 or 2 (`"auto"`: 1 in a terminal, else 0).

    Raises:
        ValueError: for anything but 0, 1, 2 or `"auto"`.
    """
    if isinstance(verbose, bool) or verbose not in VERBOSITIES:
        raise ValueError(
            "`verbose` must be 0 (silent), 1 (progress bar), 2 (one line at the end) or "
            f'"auto" (1 in a terminal, else 0). Received: verbose={verbose!r}'
        )
    if verbose == "auto":
        return 1 if getattr(sys.stdout, "isatty", lambda: False)() else 0
    return int(verbose)


class Progress:
    """A `keras.utils.Progbar` over `total` units that does nothing when `verbose` is 0.

    Args:
        total: int, the units of the whole job (examples, steps).
        verbose: 0, 1, 2 or `"auto"` (see the module docstring).
        unit_name: str, what a unit is, for the time per unit ("example" -> "12ms/example").
    """

    def __init__(self, total: int, verbose="auto", unit_name: str = "step"):
        verbose = check_verbose(verbose)
        self.bar = (
            keras.utils.Progbar(total, verbose=verbose, unit_name=unit_name) if verbose else None
        )

    def update(self, done: float, result=None):
        """Shows `done` of the total units (a fraction of a unit is allowed).

        `result`, a tensor the work done so far produced, is waited for first when progress is
        shown: the backends dispatch work asynchronously, and a bar that counted dispatched
        work would run ahead of the computation.
        """
        if self.bar is None:
            return
        if result is not None:
            ops.convert_to_numpy(result)
        self.bar.update(done)
