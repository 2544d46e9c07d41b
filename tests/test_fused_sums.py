"""downhill.fused_sums: sums of elementwise terms added up in the loop that computes them."""

import os
import re
import sys

import numpy as np
import pytensor
import pytensor.scalar as ps
import pytensor.tensor as pt
import pytest
from pytensor.compile.mode import Mode, get_mode
from pytensor.tensor.elemwise import CAReduce, Elemwise

import downhill
from downhill.fused_sums import TAG, ElemwiseSums
from downhill.fusion import mode_with_fusion

FUSES = mode_with_fusion('NUMBA') != 'NUMBA'  # this PyTensor's Numba backend compiles the loop
needs_numba_fusion = pytest.mark.skipif(not FUSES, reason="this PyTensor's Numba backend has no cache keys")


def loops(fn):
    return [n for n in fn.maker.fgraph.apply_nodes if isinstance(n.op, ElemwiseSums)]


def matrix_sums(fn):
    """The sums over arrays PyTensor still computes as a separate operation."""
    return [n for n in fn.maker.fgraph.apply_nodes
            if isinstance(n.op, CAReduce) and n.inputs[0].ndim > 0]


def factorization_step(mode, seed=0, n=30, d=20, k=3):
    """Full-batch SGD on mean((X - u v)^2) + 0.01 mean|u| (the matfact benchmark's loss, smaller)."""
    rng = np.random.default_rng(seed)
    X = pt.dmatrix('X')
    u = pytensor.shared(rng.standard_normal((n, k)), name='u')
    v = pytensor.shared(rng.standard_normal((k, d)), name='v')
    loss = ((X - u @ v) ** 2).mean() + 0.01 * abs(u).mean()
    grads = pytensor.grad(loss, [u, v])
    fn = pytensor.function([X], [loss, *grads], mode=mode,
                           updates=[(p, p - 0.1 * g) for p, g in zip((u, v), grads)])
    return fn, (u, v), rng.standard_normal((n, d))


def residual_loop(fn):
    (node,) = [n for n in loops(fn) if n.op.outputs]
    return node


@needs_numba_fusion
def test_factorization_residual_is_one_pass_with_the_same_numbers():
    fused, fused_params, X = factorization_step(mode_with_fusion('NUMBA'))
    plain, plain_params, _ = factorization_step('NUMBA')
    assert not matrix_sums(fused) and matrix_sums(plain)
    # the residual's gradient, scaled by the mean's divisor, written over the product u v
    node = residual_loop(fused)
    assert len(node.op.sums) == 1 and len(node.op.outputs) == 1 and node.op.destroy_map
    users = fused.maker.fgraph.clients[node.outputs[1]]
    assert users and all(not isinstance(user.op, Elemwise) for user, _ in users)  # the products
    for _ in range(10):
        for got, want in zip(fused(X), plain(X)):
            np.testing.assert_allclose(got, want, rtol=1e-13)
    for p, q in zip(fused_params, plain_params):
        np.testing.assert_allclose(p.get_value(), q.get_value(), rtol=1e-13)


@needs_numba_fusion
def test_the_numba_loop_matches_the_ops_perform():
    inplace = residual_loop(factorization_step(mode_with_fusion('NUMBA'))[0]).op
    # the same loop writing a new array (a graph given to pytensor.function cannot be in place)
    op = ElemwiseSums(inplace.scalar_op, inplace.sums, [(dtype, None) for dtype, _ in inplace.outputs])
    X, E, d = pt.dmatrix('X'), pt.dmatrix('E'), pt.dmatrix('d', shape=(1, 1))
    rng = np.random.default_rng(7)
    args = rng.standard_normal((9, 5)), rng.standard_normal((9, 5)), np.array([[45.0]])
    results = []
    for mode in (mode_with_fusion('NUMBA'), Mode(linker='py', optimizer=None)):
        fn = pytensor.function([X, E, d], op(X, E, d), mode=mode)
        results.append(fn(*args))
    (numba_sum, numba_out), (python_sum, python_out) = results
    np.testing.assert_allclose(numba_sum, python_sum, rtol=1e-14)
    np.testing.assert_allclose(numba_sum, ((args[0] - args[1]) ** 2).sum(), rtol=1e-14)
    np.testing.assert_allclose(numba_out, python_out, rtol=1e-15)
    np.testing.assert_allclose(numba_out, -2 * (args[0] - args[1]) / 45.0, rtol=1e-15)


@needs_numba_fusion
def test_broadcast_inputs_and_three_dimensions():
    rng = np.random.default_rng(2)
    X, b = pt.dtensor3('X'), pt.dvector('b')
    w = pt.dtensor3('w')
    r = X - b[None, None, :] * w  # b broadcast along the first two dimensions
    loss = (r ** 2).sum() + pt.exp(-w).sum()
    outs = [loss, *pytensor.grad(loss, [b, w])]
    fused = pytensor.function([X, b, w], outs, mode=mode_with_fusion('NUMBA'))
    plain = pytensor.function([X, b, w], outs, mode='NUMBA')
    assert loops(fused)
    args = rng.standard_normal((4, 5, 6)), rng.standard_normal(6), rng.standard_normal((4, 5, 6))
    for got, want in zip(fused(*args), plain(*args)):
        np.testing.assert_allclose(got, want, rtol=1e-13)
    # a non-contiguous input goes through the same loop
    strided = np.random.default_rng(3).standard_normal((4, 5, 12))[:, :, ::2]
    for got, want in zip(fused(strided, args[1], args[2]), plain(strided, args[1], args[2])):
        np.testing.assert_allclose(got, want, rtol=1e-13)


@needs_numba_fusion
def test_float32_sums_accumulate_as_pytensor_does():
    x = pt.fmatrix('x')
    fused = pytensor.function([x], (pt.exp(x) - x).sum(), mode=mode_with_fusion('NUMBA'))
    plain = pytensor.function([x], (pt.exp(x) - x).sum(), mode='NUMBA')
    assert loops(fused)
    data = np.random.default_rng(4).uniform(0, 1, (300, 300)).astype('float32')
    got, want = fused(data), plain(data)
    assert got.dtype == want.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-6)


@needs_numba_fusion
def test_a_divisor_that_depends_on_the_sum_is_not_moved_into_the_loop():
    x = pt.dmatrix('x')
    loss = pt.sqrt(((x - 1) ** 2).sum())  # gradient (x - 1) / loss: the loop cannot scale by it
    outs = [loss, pytensor.grad(loss, x)]
    fused = pytensor.function([x], outs, mode=mode_with_fusion('NUMBA'))
    plain = pytensor.function([x], outs, mode='NUMBA')
    assert loops(fused) and not matrix_sums(fused)
    data = np.random.default_rng(5).standard_normal((7, 9))
    for got, want in zip(fused(data), plain(data)):
        np.testing.assert_allclose(got, want, rtol=1e-14)


@needs_numba_fusion
def test_lengths_that_differ_are_an_error():
    a, b = pt.dmatrix('a'), pt.dmatrix('b')
    sa, sb = ps.float64('sa'), ps.float64('sb')
    op = ElemwiseSums(ps.Composite([sa, sb], [sa * sb, sa - sb]), [('float64', 'float64')],
                      [('float64', None)])
    total, diff = op(a, b)
    fn = pytensor.function([a, b], [total, diff], mode=mode_with_fusion('NUMBA'))
    x, y = np.arange(6.0).reshape(2, 3), np.ones((2, 3))
    got_total, got_diff = fn(x, y)
    assert float(got_total) == 15.0
    np.testing.assert_array_equal(got_diff, x - 1)
    with pytest.raises(ValueError, match='ElemwiseSums: the inputs differ in length along dimension 1'):
        fn(x, np.ones((2, 4)))


def test_inputs_of_different_dimensions_are_refused():
    sa, sb = ps.float64('sa'), ps.float64('sb')
    op = ElemwiseSums(ps.Composite([sa, sb], [sa * sb]), [('float64', 'float64')], [])
    with pytest.raises(TypeError, match='different numbers of dimensions'):
        op(pt.dmatrix('a'), pt.dvector('b'))


@needs_numba_fusion
def test_opting_out():
    fn, _, _ = factorization_step(mode_with_fusion(get_mode('NUMBA').excluding(TAG)))
    assert not loops(fn) and matrix_sums(fn)


@needs_numba_fusion
def test_downhill_compiles_the_fused_step():
    rng = np.random.default_rng(6)
    X = rng.standard_normal((40, 30))
    u = pytensor.shared(rng.standard_normal((40, 4)), name='u')
    v = pytensor.shared(rng.standard_normal((4, 30)), name='v')
    loss = ((X - u @ v) ** 2).mean()
    opt = downhill.build('sgd', loss, mode='NUMBA', quick_start=False)
    step = opt._compiled_step()
    assert loops(getattr(step, 'function', step))
    first = float(opt.evaluate(None)['loss'])
    for _ in zip(range(50), opt.iterate(None, learning_rate=0.1, momentum=0.5)):
        pass
    assert float(opt.evaluate(None)['loss']) < 0.5 * first


@needs_numba_fusion
def test_the_benchmark_runs_and_both_variants_agree(capsys):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from benchmarks import fused_sums
    fused_sums.main(['--size', 'tiny', '--steps', '2', '--windows', '1'])
    out = capsys.readouterr().out
    assert 'with fused sums' in out and 'page faults per step' in out
    assert float(re.search(r'parameters differ by (\S+)', out).group(1)) < 1e-12
