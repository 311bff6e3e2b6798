"""Test-only helper: `tfdlgm train ARGS...` that can be made to hang at a chosen batch.

```bash
python tests/workers/killable_train.py MARKER EPOCH,BATCH train --model vae ...
```

runs `tfdlgm.cli.main(["train", ...])` with one extra callback: after batch BATCH (0-based) of
epoch EPOCH (0-based) it writes MARKER and sleeps, so a test can kill the process there, in
the middle of an epoch, with the previous epoch checkpointed. `-` instead of EPOCH,BATCH
never hangs. Nothing in the library knows about it.
"""

import pathlib
import sys
import time

import keras

from tfdlgm import cli, training


class _HangAt(keras.callbacks.Callback):
    def __init__(self, marker, epoch, batch):
        super().__init__()
        self.marker, self.at, self.epoch = pathlib.Path(marker), (epoch, batch), 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            self.marker.write_text(f"{self.epoch},{batch}")
            time.sleep(600)


def main(marker, hang_at, *argv):
    if hang_at != "-":
        epoch, batch = (int(part) for part in hang_at.split(","))
        train = training.train

        def hanging_train(*args, callbacks=(), **kwargs):
            return train(*args, callbacks=[*callbacks, _HangAt(marker, epoch, batch)], **kwargs)

        training.train = hanging_train
    return cli.main(list(argv))


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
