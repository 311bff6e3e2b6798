"""Test-only helper: holds a folder with `tfdlgm.files.hold_folder` until it is killed.

```bash
python tests/workers/hold_folder_worker.py FOLDER MARKER
```

takes FOLDER, writes MARKER once it holds it, and sleeps. `tfdlgm/files.py` is loaded from its
file, not through the package, so that the process holds the folder within a fraction of a
second instead of starting Keras first.
"""

import importlib.util
import pathlib
import sys
import time

FILES = pathlib.Path(__file__).resolve().parents[2] / "tfdlgm" / "files.py"


def main(folder, marker):
    spec = importlib.util.spec_from_file_location("tfdlgm_files", FILES)
    files = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(files)
    with files.hold_folder(folder):
        pathlib.Path(marker).write_text("held")
        time.sleep(600)


if __name__ == "__main__":
    main(*sys.argv[1:])
