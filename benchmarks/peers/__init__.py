"""Reference implementations the benchmark suite (`benchmarks/run.py`) measures tfdlgm against."""
