"""Start-up time of the `tfdlgm` command, as a ratio to `python -c "import numpy"`.

Run:

```bash
python benchmarks/startup.py                        # ~1 min; writes results/startup.{json,md}
python benchmarks/startup.py --repeats 1 --out /tmp/startup   # a smoke run
```

What it measures. Each command runs `--repeats` times in a fresh process (wall time, median),
in the same run as the reference `python -c "import numpy"`, so the ratios compare like with
like on a busy or an idle machine. The zoo verbs and `--help` import no backend
(`tfdlgm/__init__.py` loads its modules on first use); `import tfdlgm.models` is the cost of
the first model, with the backend that `KERAS_BACKEND` names.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

COMMANDS = {
    'python -c "import numpy"': [sys.executable, "-c", "import numpy"],
    "tfdlgm --help": [sys.executable, "-m", "tfdlgm", "--help"],
    "tfdlgm zoo list": [sys.executable, "-m", "tfdlgm", "zoo", "list"],
    "tfdlgm zoo card vae-mnist": [sys.executable, "-m", "tfdlgm", "zoo", "card", "vae-mnist"],
    'python -c "import tfdlgm.models"': [sys.executable, "-c", "import tfdlgm.models"],
}


def median_seconds(argv, repeats):
    """Median wall time of `argv` in a fresh process over `repeats` runs."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, env={**os.environ})
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1. Received: {args.repeats}")
    seconds = {name: median_seconds(command, args.repeats) for name, command in COMMANDS.items()}
    reference = seconds['python -c "import numpy"']
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "backend": os.environ.get("KERAS_BACKEND", "tensorflow"),
        "repeats": args.repeats,
        "seconds": seconds,
        "ratio_to_numpy": {name: value / reference for name, value in seconds.items()},
    }
    lines = [
        "# Start-up of the tfdlgm command",
        "",
        f"{result['date']}, KERAS_BACKEND={result['backend']}; median wall time of "
        f"{args.repeats} fresh processes each, in one run.",
        "",
        '| command | seconds | / `python -c "import numpy"` |',
        "|---|---:|---:|",
        *(
            f"| `{name}` | {value:.2f} | {result['ratio_to_numpy'][name]:.1f}x |"
            for name, value in seconds.items()
        ),
    ]
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "startup.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "startup.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
