"""PyTensor reproducer: a Composite nesting a multi-output Composite computes wrong values in Python.

    python -m benchmarks.repro_nested_composite

``ScalarInnerGraphOp.py_perform_fn`` (pytensor/scalar/basic.py) gives the
inner multi-output node the default argument ``outputs=[[None]] * n_outs``:
one list repeated, so every output of the nested Composite is the value of
its last one. Only the Python implementation (``impl``, the Python linker,
``Elemwise.perform``) is affected; the Numba and C backends compile the inner
graph. PyTensor's own fusion does not nest multi-output Composites, so plain
graphs do not meet it; the Python reference of :class:`downhill.stencil.StencilLoop`,
whose terms nest them, gives each inner output its own cell.
"""

import pytensor.scalar as ps


def main():
    a = ps.float64('a')
    inner = ps.Composite([a], [a + 1, a * 10])
    b = ps.float64('b')
    first, second = inner(b)
    outer = ps.Composite([b], [first, second])
    got = outer.impl(2.0)
    print(f'inner.impl(2.0) = {inner.impl(2.0)}')
    print(f'outer.impl(2.0) = {got}   (expected (3.0, 20.0))')
    return 0 if got == (3.0, 20.0) else 1


if __name__ == '__main__':
    raise SystemExit(main())
