"""Derive and check the coefficients of ``downhill.fast_tanh``.

    python -m benchmarks.fit_tanh            # fit, print the coefficients, sample check
    python -m benchmarks.fit_tanh --all      # also every positive float32 below 9.6 (~2 min)

The approximation is ``tanh(x) ~ x P(x^2) / Q(x^2)`` on ``|x| <= CLAMP``,
evaluated in float64 and rounded to float32. ``P`` (degree 5) and ``Q``
(degree 6) are fitted to the relative error of ``tanh`` on ``[0, CLAMP]`` by a
linearised least-squares iteration (Sanathanan-Koerner) with Lawson
reweighting towards the minimax error, in a Chebyshev basis for conditioning,
then converted to monomials in ``x^2`` for Horner's rule. The fit reaches a
relative error of about 1.5e-12, so the float32 result is the correctly
rounded ``tanh`` except for inputs within ~1e-12 relative of a rounding
boundary; libm's ``tanhf`` (what PyTensor's Numba backend calls) is off by up
to 2 ulp.
"""

import argparse

import numpy as np
from numpy.polynomial import chebyshev, polynomial

from downhill.fast_tanh import CLAMP, numpy_rational_tanh

DEGREES = (5, 6)


def fit(m=DEGREES[0], n=DEGREES[1], clamp=CLAMP, points=4000, iterations=60):
    """Coefficients (p, q) in powers of u = x**2, q[0] = 1; and the fit's max relative error."""
    k = np.arange(points)
    x = clamp * (1 - np.cos(np.pi * (k + 0.5) / points)) / 2
    x = x[x > 1e-4]
    s = 2 * (x / clamp) ** 2 - 1  # the Chebyshev variable on [-1, 1]
    f = np.tanh(x) / x
    Tm, Tn = chebyshev.chebvander(s, m), chebyshev.chebvander(s, n)
    a = np.hstack([Tm, -f[:, None] * Tn[:, 1:]])
    q_prev, weight = np.ones_like(s), np.full_like(s, 1 / len(s))
    for it in range(iterations):
        scale = np.sqrt(weight) / (f * np.abs(q_prev))
        c = np.linalg.lstsq(a * scale[:, None], f * scale, rcond=None)[0]
        pc, qc = c[:m + 1], np.concatenate([[1.0], c[m + 1:]])
        q_prev = chebyshev.chebval(s, qc)
        err = chebyshev.chebval(s, pc) / q_prev / f - 1
        if it > 5:
            weight = weight * np.sqrt(np.abs(err))
            weight /= weight.sum()

    def in_u(cheb):  # s = 2 u / clamp**2 - 1
        out = np.zeros(len(cheb))
        for i, coef in enumerate(chebyshev.cheb2poly(cheb)):
            out[:i + 1] += coef * polynomial.polypow([-1, 2 / clamp ** 2], i)
        return out
    p, q = in_u(pc), in_u(qc)
    return p / q[0], q / q[0], float(np.abs(err).max())


def check(x, p, q):
    """(fraction not correctly rounded, max error in float32 ulps) over float32 ``x``."""
    exact = np.tanh(x.astype(np.float64))
    rounded = exact.astype(np.float32)
    got = numpy_rational_tanh(x, p, q)
    ulp = np.spacing(np.abs(rounded)).astype(np.float64)
    return float(np.mean(got != rounded)), float((np.abs(got - exact) / ulp).max())


def main(argv=None):
    ap = argparse.ArgumentParser(prog='python -m benchmarks.fit_tanh')
    ap.add_argument('--all', action='store_true', help='check every positive float32 below the clamp')
    args = ap.parse_args(argv)
    p, q, err = fit()
    print(f'max relative error of the fit: {err:.2e}')
    print('P =', '(' + ', '.join(repr(float(c)) for c in p) + ')')
    print('Q =', '(' + ', '.join(repr(float(c)) for c in q) + ')')
    rng = np.random.default_rng(0)
    sample = np.concatenate([rng.uniform(-10, 10, 2_000_000), rng.standard_normal(2_000_000),
                             10 ** rng.uniform(-40, 1, 1_000_000)]).astype(np.float32)
    frac, ulps = check(sample, p, q)
    print(f'5e6 sampled float32: {frac:.2e} not correctly rounded, max error {ulps:.3f} ulp')
    if args.all:
        top = int(np.float32(CLAMP + 0.5).view(np.int32))
        worst, wrong, total = 0.0, 0, 0
        for start in range(1, top, 1 << 24):
            x = np.arange(start, min(start + (1 << 24), top), dtype=np.int32).view(np.float32)
            frac, ulps = check(x, p, q)
            wrong += round(frac * len(x))
            total += len(x)
            worst = max(worst, ulps)
        print(f'all {total} positive float32 up to {CLAMP + 0.5}: {wrong} not correctly rounded '
              f'({wrong / total:.2e}), max error {worst:.3f} ulp')


if __name__ == '__main__':
    main()
