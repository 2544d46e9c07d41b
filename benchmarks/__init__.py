"""Benchmarks of downhill against one raw compiled PyTensor function (issue 8).

Run ``python -m benchmarks --help`` from the repository root. Every
implementation runs in its own process (:mod:`benchmarks.worker`), driven by
:mod:`benchmarks.run`; problems and update formulas are in
:mod:`benchmarks.problems`. Results of a recorded run are in
``benchmarks/RESULTS.md``.
"""
