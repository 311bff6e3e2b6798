"""One owner per checkpoint folder (`tfdlgm.files.hold_folder`), tested across real processes:
a second writer is refused at once, a writer killed with SIGKILL does not block the next one,
and the owner sweeps the temporary files of killed writes."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import pytest

from tfdlgm import cli, files, training
from tfdlgm.models import VAE

HOLDER = pathlib.Path(__file__).parent / "workers" / "hold_folder_worker.py"


def _model():
    model = VAE(latent_dim=2, hidden=(8,), data_dim=20, seed=0)
    model.compile(optimizer="adam")
    return model


@pytest.fixture
def holder(tmp_path):
    """A process that holds `tmp_path / "run"`: `(folder, process)`; killed at the end."""
    folder, marker = tmp_path / "run", tmp_path / "held"
    process = subprocess.Popen(
        [sys.executable, str(HOLDER), str(folder), str(marker)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert marker.exists(), process.communicate()[0]
    yield folder, process
    if process.poll() is None:
        process.kill()
    process.communicate()


def test_a_second_process_is_refused_at_once_naming_the_holder(holder, binary_data):
    folder, process = holder
    assert (folder / files.LOCK_FILE).read_text().startswith(f"pid {process.pid} on ")
    live = folder / f"{files.TEMPORARY_PREFIX}epoch-0003-live.keras"  # the holder writing
    live.write_bytes(b"being written")
    start = time.monotonic()
    with pytest.raises(files.FolderInUseError, match=rf"in use by another run \(pid {process.pid}"):
        with files.hold_folder(folder):
            pass
    assert time.monotonic() - start < 1  # refused at once, not after a wait
    with pytest.raises(files.FolderInUseError) as raised:
        training.train(_model(), binary_data, epochs=1, checkpoint_dir=folder, verbose=0)
    assert raised.value.folder == folder and f"pid {process.pid}" in raised.value.holder
    assert live.is_file()  # the refused run swept nothing
    assert not (folder / training.STATE_FILE).exists()


def test_the_command_line_refuses_a_held_folder_in_one_line(holder, capsys):
    folder, process = holder
    start = time.monotonic()
    status = cli.main(["train", "--model", "vae", "--epochs", "1", "--checkpoint-dir", str(folder)])
    elapsed = time.monotonic() - start
    err = capsys.readouterr().err
    assert status == 1
    assert err.startswith(f"tfdlgm train: error: {folder} is in use by another run (pid "), err
    assert f"pid {process.pid} on " in err and len(err.strip().splitlines()) == 1
    assert elapsed < 1, elapsed  # before any data is loaded


def test_a_holder_killed_with_sigkill_does_not_block_the_next_run(holder, binary_data):
    folder, process = holder
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    assert (folder / files.LOCK_FILE).read_text().startswith(f"pid {process.pid} ")  # stale
    history = training.train(_model(), binary_data, epochs=1, checkpoint_dir=folder, verbose=0)
    assert history.epoch == [0]
    assert json.loads((folder / training.STATE_FILE).read_text())["epoch"] == 1
    with files.hold_folder(folder):
        assert (folder / files.LOCK_FILE).read_text().startswith(f"pid {os.getpid()} on ")


def test_the_holding_thread_may_hold_again_other_threads_may_not(tmp_path):
    refused = []

    def other_thread():
        try:
            with files.hold_folder(tmp_path):
                pass
        except files.FolderInUseError as error:
            refused.append(error)

    with files.hold_folder(tmp_path):
        with files.hold_folder(tmp_path / "." / ""):  # the same folder, spelt otherwise
            pass
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        assert len(refused) == 1
        assert f"pid {os.getpid()} on " in refused[0].holder
    with files.hold_folder(tmp_path):  # released: free again
        pass
    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join()
    assert len(refused) == 1


def test_a_file_is_not_a_folder_to_hold(tmp_path):
    (tmp_path / "notes").write_text("a file")
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
        with files.hold_folder(tmp_path / "notes"):
            pass


def test_the_owner_removes_temporary_files_of_killed_writes(binary_data, tmp_path):
    training.train(_model(), binary_data, epochs=1, checkpoint_dir=tmp_path, verbose=0)
    stray = [
        tmp_path / f"{files.TEMPORARY_PREFIX}epoch-0002-k1ll3d.keras",
        tmp_path / f"{files.TEMPORARY_PREFIX}state-k1ll3d.json",
    ]
    for path in stray:
        path.write_bytes(b"half written")
    history = training.train(
        _model(), binary_data, epochs=2, checkpoint_dir=tmp_path, resume=True, verbose=0
    )
    assert history.epoch == [1]
    assert not any(path.exists() for path in stray)
    assert files.remove_temporaries(tmp_path) == []
