"""The backend: everything that changes how PyTensor compiles or calls a graph.

Layer 1, above :mod:`downhill._compat` only. The rest of downhill reaches it
through :mod:`downhill.backend.compile` (``prepare``, ``compile_function``,
``check_mode``, ``speedups``): one seam, and one switch that turns every
speed-up off (``DOWNHILL_SPEEDUPS=0`` or ``use_speedups(False)``). The
tricks themselves, each with the note on where it belongs in
``docs/performance.rst``:

- :mod:`~downhill.backend.stencil`, :mod:`~downhill.backend.fused_sums`,
  :mod:`~downhill.backend.generated_loops`, :mod:`~downhill.backend.fusion`:
  graph rewrites and generated Numba loops;
- :mod:`~downhill.backend.fast_tanh`: ``tanh`` without the scalar libm call;
- :mod:`~downhill.backend.quick`: the Python-linker mode of a quick start.
"""
