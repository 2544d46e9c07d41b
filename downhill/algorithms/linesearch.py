r"""Line searches for the quasi-Newton methods.

Both take ``evaluate(x) -> (monitors, gradient)`` (monitors a list of
floats, the loss first), the current point :math:`x` with its loss
:math:`f` and gradient :math:`g`, and a descent direction :math:`d`
(:math:`g^\top d < 0`), and return the accepted point as a :class:`Point`,
or None when no acceptable step was found.

* :func:`strong_wolfe` (unconstrained): a step :math:`\alpha` with

  .. math::
      f(x + \alpha d) \le f(x) + c_1 \alpha\, g^\top d, \qquad
      |\nabla f(x + \alpha d)^\top d| \le c_2\, |g^\top d|

  found by :func:`scipy.optimize.line_search` (bracketing and zoom with
  cubic interpolation, [Noce06]_ algorithms 3.5-3.6). SciPy ships with
  PyTensor; it is imported when the first search runs. Each evaluation is
  one call of ``evaluate``: the loss and gradient at the same point come
  from one pass.
* :func:`projected_backtracking` (simple bounds): the projected arc
  :math:`x(\alpha) = P(x + \alpha d)`, with the Armijo condition
  :math:`f(x(\alpha)) \le f(x) + c_1\, g^\top (x(\alpha) - x)` and
  :math:`\alpha` halved (or cut by a safeguarded quadratic fit) until it
  holds ([Bert82]_, [Kim10]_).

References
----------
.. [Noce06] J. Nocedal & S. J. Wright (2006) *Numerical Optimization*,
   2nd ed. Springer.
.. [Bert82] D. P. Bertsekas (1982) "Projected Newton methods for
   optimization problems with simple constraints." SIAM J. Control and
   Optimization 20(2):221-246.
.. [Kim10] D. Kim, S. Sra & I. S. Dhillon (2010) "Tackling box-constrained
   optimization via a new projected quasi-Newton approach." SIAM J.
   Scientific Computing 32(6):3548-3563.
"""

import collections
import math
import warnings

import numpy as np

__all__ = ['Point', 'strong_wolfe', 'projected_backtracking']

#: An accepted point: the step length, the point, its monitors (the loss first) and gradient.
Point = collections.namedtuple('Point', 'step x monitors grad')


def _scipy_line_search():
    try:
        from scipy.optimize import line_search
    except ImportError as err:  # scipy is a dependency of PyTensor, but say which package it is
        raise ImportError('the strong-Wolfe line search of downhill\'s quasi-Newton methods '
                          'uses scipy.optimize.line_search: pip install scipy') from err
    return line_search


def strong_wolfe(evaluate, x, f, g, d, first_step=1.0, c1=1e-4, c2=0.9, max_evals=20):
    """Search along ``d`` from ``x`` for a step that meets the strong Wolfe conditions.

    Returns a :class:`Point`, or None if ``max_evals`` evaluations found no
    step that meets them (and none that merely lowered the loss enough).
    """
    line_search = _scipy_line_search()
    seen = {}
    order = []

    def at(point):
        key = point.tobytes()
        if key not in seen:
            seen[key] = evaluate(point)
            order.append(key)
        return seen[key]

    # SciPy asks for the loss and the gradient at a point separately: both come from one pass.
    scale = first_step
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # LineSearchWarning: we report failure ourselves
        alpha, *_ = line_search(lambda p: at(p)[0][0], lambda p: at(p)[1], x, scale * d, g, f,
                                None, c1=c1, c2=c2, maxiter=max_evals)
    if alpha is not None:
        point = x + alpha * (scale * d)
        monitors, grad = at(point)
        if math.isfinite(monitors[0]):
            return Point(alpha * scale, point, monitors, grad)
    # No Wolfe step: accept the best point seen if it decreased the loss sufficiently.
    gd = float(g @ d)
    best = None
    for key in order:
        point = np.frombuffer(key, dtype=x.dtype)
        monitors, grad = seen[key]
        step = float(np.dot(point - x, d) / np.dot(d, d))
        if monitors[0] <= f + c1 * step * gd and (best is None or monitors[0] < best.monitors[0]):
            best = Point(step, point.copy(), monitors, grad)
    return best


def projected_backtracking(evaluate, x, f, g, d, project, first_step=1.0, c1=1e-4, max_evals=20):
    """Backtrack along the projected arc ``project(x + step d)`` until the Armijo condition holds.

    Returns a :class:`Point`, or None if ``max_evals`` steps all failed.
    """
    step = first_step
    for _ in range(max_evals):
        point = project(x + step * d)
        move = point - x
        slope = float(g @ move)
        if not np.any(move):
            return None
        monitors, grad = evaluate(point)
        value = monitors[0]
        if math.isfinite(value) and value <= f + c1 * slope:
            return Point(step, point, monitors, grad)
        # The minimizer of the quadratic through f, the slope and the new value, kept in [0.1, 0.5].
        if math.isfinite(value) and value > f + slope:
            cut = -slope / (2.0 * (value - f - slope))
            step *= min(0.5, max(0.1, cut))
        else:
            step *= 0.5
    return None
