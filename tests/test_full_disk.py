"""Writes into a full file system: a checkpoint and a preset written where no space is left
keep the previous one whole and loadable, and fail with one line naming the file.

The file system is a real one: a 512 KiB tmpfs mounted for the test, filled up to its last
block. Mounting needs root (CAP_SYS_ADMIN); where it is not allowed the tests are skipped,
and the same promises are kept by the tests that inject the fault (`test_training.py`,
`test_zoo.py`: a failing write, `RLIMIT_FSIZE`).
"""

import errno
import json
import shutil
import subprocess

import numpy as np
import pytest

from tfdlgm import training, zoo
from tfdlgm.models import VAE


@pytest.fixture
def small_disk(tmp_path):
    """A 512 KiB tmpfs mounted at `tmp_path / "disk"`, unmounted at the end."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount, umount = shutil.which("mount"), shutil.which("umount")
    if mount is None or umount is None:
        pytest.skip("no mount command to make a small file system")
    result = subprocess.run(
        [mount, "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not allowed here (needs root): {result.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run([umount, str(disk)], check=True)


def _fill(disk):
    """Fills `disk` to its last block with `disk/filler`."""
    with open(disk / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as error:
            assert error.errno == errno.ENOSPC, error


def _model(seed=0):
    model = VAE(latent_dim=2, hidden=(8,), data_dim=20, seed=seed)
    model.compile(optimizer="adam")
    return model


def test_a_checkpoint_written_into_a_full_disk_keeps_the_last_epoch(small_disk, binary_data):
    folder = small_disk / "run"
    training.train(_model(), binary_data, epochs=1, checkpoint_dir=folder, verbose=0)
    state = (folder / "state.json").read_text()
    _fill(small_disk)
    with pytest.raises(training.CheckpointWriteError) as raised:
        training.train(
            _model(), binary_data, epochs=2, checkpoint_dir=folder, resume=True, verbose=0
        )
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(
        f"Could not write the checkpoint of epoch 2: writing {folder / 'epoch-0002.keras'} failed"
    ), message
    assert f"{folder} still holds the checkpoint of epoch 1" in message
    assert (folder / "state.json").read_text() == state
    assert not list(folder.glob(".tmp-*"))  # the failed write left nothing behind
    (small_disk / "filler").unlink()
    model, epoch = training.latest_checkpoint(folder)
    assert epoch == 1 and isinstance(model, VAE)
    assert json.loads(state)["epoch"] == 1


def test_a_preset_written_into_a_full_disk_leaves_the_old_preset(small_disk):
    old, new = _model(seed=0), _model(seed=1)
    folder = zoo.save_preset(old, small_disk / "tiny", {"optimizer": "adam"}, {}, "# old\n")
    _fill(small_disk)
    with pytest.raises(OSError) as raised:
        zoo.save_preset(new, folder, {"optimizer": "adam"}, {}, "# new\n")
    message = str(raised.value)
    assert "\n" not in message and str(folder) in message, message
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "tiny"]
    loaded = zoo.load(folder, compile=False)  # the old preset, whole
    for a, b in zip(loaded.get_weights(), old.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert zoo.card(folder) == "# old\n"
