"""The GPU benchmark (``bench_gpu``): one prepared run for a lent GPU machine, also runnable on a CPU at toy sizes."""
