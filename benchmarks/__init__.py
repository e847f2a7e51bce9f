"""Benchmarks of the pipeline against the original script: run them with `nox -s bench`.

bench.py is the command line and the order of the runs; each other module measures one thing
(size, speed, readback, memory, formats: EROFS against squashfs, sysext_merge, trust: what a
signed dm-verity DDI costs) or serves them (common, standin, original, bare, table, docs).
"""
