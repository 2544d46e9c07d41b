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


def factorization_step(mode, seed=0, n=30, d=20, k=3, c=0.01, lr=0.1):
    """Full-batch SGD on mean((X - u v)^2) + c mean|u| (the matfact benchmark's loss, smaller)."""
    rng = np.random.default_rng(seed)
    X = pt.dmatrix('X')
    u = pytensor.shared(rng.standard_normal((n, k)), name='u')
    v = pytensor.shared(rng.standard_normal((k, d)), name='v')
    loss = ((X - u @ v) ** 2).mean() + c * abs(u).mean()
    grads = pytensor.grad(loss, [u, v])
    fn = pytensor.function([X], [loss, *grads], mode=mode,
                           updates=[(p, p - lr * g) for p, g in zip((u, v), grads)])
    return fn, (u, v), rng.standard_normal((n, d))


#: float64's unit roundoff: one rounding changes a value x by at most EPS |x|.
EPS = 2.0 ** -53


def gamma(m):
    """Higham's gamma_m = m EPS / (1 - m EPS).

    A value that went through m roundings (in any order: a sum of m + 1
    terms added up in any order, a product of m + 1 factors, fused
    multiply-adds, which round once where a multiply and an add round twice)
    is within gamma_m sum|terms| of the exact value.
    """
    return m * EPS / (1 - m * EPS)


def factorization_bounds(u, v, X, c=0.01, lr=0.1):
    """Bounds on |computed - exact| of one step of :func:`factorization_step` from ``u``, ``v``.

    Valid for any order of the additions, with or without contraction into
    fused multiply-adds or division by a reciprocal (fast-math), so for the
    fused loop and for PyTensor's operations alike; two computations of a
    value differ by at most twice its bound. Per element, with k, n, d the
    dimensions and N = n d:

    - u v: gamma_k (|u| |v|) (a matrix product of |u| and |v|);
    - the residual R = X - u v: gamma_{k+1} A, A = |X| + |u| |v|;
    - its gradient G = -2 R / N (one rounding, two with a reciprocal):
      gamma_{k+3} B, B = 2 A / N;
    - G v^T (d more roundings, of terms |G| |v| <= B |v|) plus the penalty's
      c sign(u) / (n k) (a division and an addition): gamma_{d+k+5} C_u,
      C_u = B |v^T| + c / (n k); u^T G: gamma_{n+k+3} C_v, C_v = |u^T| B;
    - R^2: gamma_{2k+3} A^2, summed (N - 1 roundings), divided by N, plus
      c sum|u| / (n k) (n k - 1 <= N - 1 roundings, a product and a
      division) and one addition: gamma_{N+2k+5} (sum A^2 / N + c sum|u| / (n k));
    - p - lr g (a product and a subtraction): gamma_{m+2} (|p| + lr C),
      m the count of g's roundings.

    The bounds are computed in float64 from nonnegative terms: their own
    rounding changes them by a relative O(N EPS), immaterial here.
    """
    n, k = u.shape
    d = v.shape[1]
    N = n * d
    A = abs(X) + abs(u) @ abs(v)
    B = 2 * A / N
    C_u = B @ abs(v.T) + c / (n * k)
    C_v = abs(u.T) @ B
    loss = gamma(N + 2 * k + 5) * ((A ** 2).sum() / N + c * abs(u).sum() / (n * k))
    return ([loss, gamma(d + k + 5) * C_u, gamma(n + k + 3) * C_v],
            [gamma(d + k + 7) * (abs(u) + lr * C_u), gamma(n + k + 5) * (abs(v) + lr * C_v)])


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
    # Ten steps, each from the same parameters in both functions: the sums are
    # added up in another order and the loops may round differently (fast-math),
    # so each result may differ by twice its bound (either is within it of the
    # exact value); the parameters after a step too.
    for _ in range(10):
        start = [p.get_value() for p in fused_params]
        for q, value in zip(plain_params, start):
            q.set_value(value)
        out_bounds, param_bounds = factorization_bounds(*start, X)
        for got, want, bound in zip(fused(X), plain(X), out_bounds):
            assert np.all(abs(got - want) <= 2 * bound)
        for p, q, bound in zip(fused_params, plain_params, param_bounds):
            assert np.all(abs(p.get_value() - q.get_value()) <= 2 * bound)
    assert not np.array_equal(start[0], fused_params[0].get_value())  # the steps moved u


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
    # Each term (x - e)^2 is within gamma_3 of its exact value (a subtraction and a
    # square, relative), their sum of 45 in any order within gamma_{44+3} of the
    # exact sum; -2 (x - e) / 45 within gamma_3 (two roundings, three with a
    # reciprocal): two computations differ by twice that.
    squares = (args[0] - args[1]) ** 2
    for total in (python_sum, squares.sum()):
        assert abs(numba_sum - total) <= 2 * gamma(47) * squares.sum()
    for out in (python_out, -2 * (args[0] - args[1]) / 45.0):
        assert np.all(abs(numba_out - out) <= 2 * gamma(3) * abs(out))


def broadcast_bounds(X, b, w):
    """Bounds on |computed - exact| of the loss and gradients of ``test_broadcast_inputs_and_three_dimensions``.

    Per element, A = |X| + |b| |w|: r = X - b w within gamma_2 A (a product
    and a subtraction, or one fused multiply-add); r^2 within gamma_5 A^2
    (2 gamma_2 + gamma_2^2 from r, and the square's rounding); exp(-w)
    within 1 ulp <= gamma_2 exp(-w) (glibc's exp). The loss adds N = 120 of
    each in any order and the two sums (N + 5 roundings at most); the
    gradient of w, -2 r b - exp(-w), is within gamma_4 (2 |b| A + exp(-w));
    that of b adds 20 terms -2 r w (each within gamma_3 2 A |w|): gamma_23.
    """
    A = abs(X) + abs(b) * abs(w)
    N = X.size
    loss = gamma(N + 5) * ((A ** 2).sum() + np.exp(-w).sum())
    grad_b = gamma(23) * (2 * A * abs(w)).sum(axis=(0, 1))
    grad_w = gamma(4) * (2 * abs(b) * A + np.exp(-w))
    return loss, grad_b, grad_w


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
    # a non-contiguous input goes through the same loop
    strided = np.random.default_rng(3).standard_normal((4, 5, 12))[:, :, ::2]
    for X_value in (args[0], strided):
        got, want = fused(X_value, *args[1:]), plain(X_value, *args[1:])
        for g, w, bound in zip(got, want, broadcast_bounds(X_value, *args[1:])):
            assert np.all(abs(g - w) <= 2 * bound)


@needs_numba_fusion
def test_float32_sums_accumulate_as_pytensor_does():
    x = pt.fmatrix('x')
    fused = pytensor.function([x], (pt.exp(x) - x).sum(), mode=mode_with_fusion('NUMBA'))
    plain = pytensor.function([x], (pt.exp(x) - x).sum(), mode='NUMBA')
    assert loops(fused)
    data = np.random.default_rng(4).uniform(0, 1, (300, 300)).astype('float32')
    got, want = fused(data), plain(data)
    assert got.dtype == want.dtype == np.float32
    # A term exp(x) - x is within gamma32_3 (exp(x) + |x|) of its exact value (expf,
    # within 1 ulp, and a subtraction in float32); the 90,000 terms are added up
    # in float64 (in any order: gamma_N of their absolute sum), and the float64
    # total is rounded to float32 (half an ulp). Either result is within that of
    # the exact sum.
    u32 = 2.0 ** -24
    wide = data.astype(np.float64)
    terms = (np.exp(wide) + abs(wide)).sum()
    bound = 3 * u32 / (1 - 3 * u32) * terms + gamma(data.size) * terms + u32 * abs(float(want))
    assert abs(float(got) - float(want)) <= 2 * bound
    assert 2 * bound <= 1e-6 * abs(float(want))  # tight enough to see a term added twice


@needs_numba_fusion
def test_a_divisor_that_depends_on_the_sum_is_not_moved_into_the_loop():
    x = pt.dmatrix('x')
    loss = pt.sqrt(((x - 1) ** 2).sum())  # gradient (x - 1) / loss: the loop cannot scale by it
    outs = [loss, pytensor.grad(loss, x)]
    fused = pytensor.function([x], outs, mode=mode_with_fusion('NUMBA'))
    plain = pytensor.function([x], outs, mode='NUMBA')
    assert loops(fused) and not matrix_sums(fused)
    data = np.random.default_rng(5).standard_normal((7, 9))
    # S = sum (x - 1)^2: 63 terms within gamma_3 each (relative: a subtraction and a
    # square), summed in any order: gamma_65 S; its square root halves that and
    # rounds once: within gamma_34 sqrt(S). The gradient (x - 1) / sqrt(S), however
    # PyTensor arranges its products by 0.5 and 2: the root's gamma_34, the
    # subtraction, the division (two roundings with a reciprocal) and three
    # products: gamma_40 |x - 1| / sqrt(S).
    root = np.sqrt(((data - 1) ** 2).sum())
    bounds = gamma(34) * root, gamma(40) * abs(data - 1) / root
    for got, want, bound in zip(fused(data), plain(data), bounds):
        assert np.all(abs(got - want) <= 2 * bound)


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
