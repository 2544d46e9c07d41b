r"""downhill's per-batch algorithms as PyMC variational optimizers (``obj_optimizer``).

PyMC's variational inference (``pm.fit``, ``pm.ADVI().fit``, ``FullRankADVI``,
``SVGD``) builds one step from ``obj_optimizer(grads, params)``: a callable
given the list of gradients of the objective (or a scalar loss) and the
shared variables of the approximation, returning an ``OrderedDict`` of
updates (``pymc/variational/opvi.py``, ``ObjectiveFunction.add_obj_updates``).
:func:`updates` makes such a callable from any downhill algorithm that works
on one mini-batch at a time. PyMC is never imported by this module.
"""

import collections
import math

import pytensor
import pytensor.tensor as pt
from pytensor.compile.sharedvalue import SharedVariable
from pytensor.gradient import disconnected_grad
from pytensor.graph.basic import Variable
from pytensor.tensor.exceptions import NotScalarConstantError

from ..core import hyperparams, schedules
from ..optimizer.base import build
from ..optimizer.hyperparameters import LOOP_KEYWORDS, valid_keywords
from ..optimizer.registry import lookup, spelling

__all__ = ['updates', 'halflife', 'PyMCOptimizer']


def halflife(beta):
    r"""The half-life :math:`h` whose EWMA weight is ``beta``: :math:`h = -\ln 2 / \ln \beta`.

    downhill takes decay rates as half-lives (``rms_halflife``,
    ``beta1_halflife``, ``beta2_halflife``) and turns them back into
    :math:`\beta = e^{-\ln 2 / h}`; for PyMC's ``rho``, ``beta1``, ``beta2``
    (0.9, 0.95, 0.999...) that round trip gives back the same float.
    """
    beta = hyperparams.number('beta', beta, low=0, low_open=True)
    if beta >= 1:
        raise ValueError(f'beta must be below 1 (a decay rate), got {hyperparams.shown(beta)}')
    return -math.log(2) / math.log(beta)


def updates(algo, **hyperparameters):
    r"""A PyMC ``obj_optimizer`` that steps with the downhill algorithm ``algo``.

    ::

        fit = pm.fit(10000, method='advi',
                     obj_optimizer=downhill.pymc.updates('adam', learning_rate=0.01))

    ``hyperparameters`` are ``algo``'s (as for :meth:`downhill.Optimizer.iterate`),
    held in shared scalars (``opt.optimizer.learning_rate.set_value(...)``
    between two ``fit`` calls recompiles nothing): numbers, schedules
    (:mod:`downhill.core.schedules`, evaluated in PyMC's step from downhill's
    update counter, which the step increments; ``reduce_on_plateau`` is fed
    by :meth:`PyMCOptimizer.plateau_callback`), per-parameter clipping
    (``max_gradient_norm``, ``max_gradient_elem``) of the objective's
    gradient, then ``weight_decay`` (adds :math:`\lambda p`). PyMC passes
    gradients, not a loss: see :func:`_from_gradients`.

    The PyMC optimizers and the downhill steps that compute the same
    updates (``rho``, ``beta1``, ``beta2`` given to downhill as half-lives,
    ``halflife(b)`` :math:`= -\ln 2 / \ln b`, which round-trips exactly):

    ================================== =============================================================
    PyMC                               downhill
    ================================== =============================================================
    ``sgd(learning_rate=a)``           ``'sgd', learning_rate=a``
    ``momentum(a, momentum=mu)``       ``'sgd', learning_rate=a, momentum=mu``
                                       (:math:`v \leftarrow \mu v - a g`, :math:`p \leftarrow p + v`)
    ``nesterov_momentum(a, mu)``       ``'sgd', learning_rate=a, momentum=mu, nesterov=True``
                                       (or ``'nag'``; :math:`p \leftarrow p + \mu v_{new} - a g`)
    ``adagrad(a, epsilon=e)``          ``'adagrad', learning_rate=a, rms_regularizer=e``
    ``adadelta(1.0, rho=r, e)``        ``'adadelta', rms_halflife=halflife(r), rms_regularizer=e``
                                       (downhill has no learning rate there: PyMC's must be 1)
    ``adam(a, b1, b2, epsilon=0)``     ``'adam', learning_rate=a, beta1_halflife=halflife(b1),
                                       beta2_halflife=halflife(b2), rms_regularizer=0``
    ``adamax(a, b1, b2, epsilon=e)``   ``'adamax', learning_rate=a, beta1_halflife=halflife(b1),
                                       beta2_halflife=halflife(b2), rms_regularizer=e``
    ================================== =============================================================

    They agree to rounding (relative differences below 1e-13 after 30 ADVI
    steps in the tests), except:

    * ``adam`` with :math:`\epsilon > 0`: PyMC folds the bias correction
      into the step size, :math:`a \sqrt{1 - \beta_2^t} / (1 - \beta_1^t)
      \cdot m_t / (\sqrt{v_t} + \epsilon)`, so its :math:`\epsilon` is
      downhill's :math:`\epsilon / \sqrt{1 - \beta_2^t}`, which changes with
      :math:`t`: no constant ``rms_regularizer`` matches it (with 1e-8 on
      both sides, 4e-8 apart after 30 steps). With 0 on both, they agree.
    * ``rmsprop``: PyMC's is Tieleman & Hinton's,
      :math:`p \leftarrow p - a g / \sqrt{G_t + \epsilon}`; downhill's
      ``'rmsprop'`` is Graves' centred form, :math:`\sqrt{G_t - f_t^2 +
      \epsilon}` with :math:`f_t` the running mean of :math:`g`. They
      differ whenever the gradient's mean is not zero; no downhill
      algorithm computes PyMC's.
    * ``adagrad_window`` (PyMC's default) has no downhill counterpart.

    Parameters
    ----------
    algo : str or Optimizer subclass
        A per-batch algorithm: ``'sgd'``, ``'nag'``, ``'rprop'``,
        ``'rmsprop'``, ``'adagrad'``, ``'adadelta'``, ``'esgd'``,
        ``'adam'``, ``'adamw'``, ``'adamax'``, ``'nadam'``. The full-batch
        ``'lbfgs'``, ``'bfgs'`` and ``'newton-cg'`` need the whole objective
        at every iteration, which PyMC's step never gives: a ValueError.
    **hyperparameters
        The training loop's (``patience``...) are a ValueError: PyMC runs the loop.

    Returns
    -------
    PyMCOptimizer
        ``(loss_or_grads, params) -> OrderedDict`` of updates; its
        ``optimizer`` is the downhill optimizer it built last.
    """
    cls = _per_batch_algorithm(algo)
    _check_keywords(cls, hyperparameters)
    return PyMCOptimizer(cls, hyperparameters)


def _per_batch_algorithm(algo):
    """The Optimizer subclass of ``algo``, refused if it is a full-batch method."""
    cls = lookup(algo)
    if getattr(cls, 'takes_all_batches', False):
        raise ValueError(
            f'algo {spelling(cls.__name__)!r} is a full-batch method (it needs the whole objective '
            'at every iteration); a PyMC obj_optimizer makes one stochastic step per call: use a '
            "per-batch algorithm such as 'adam', 'sgd' or 'rmsprop'")
    return cls


def _check_keywords(cls, hyperparameters):
    """Refuse, before PyMC builds anything, keywords ``cls`` does not take or the loop's."""
    loop = [k for k in hyperparameters if k in LOOP_KEYWORDS or k in ('reset', 'on_nonfinite')]
    if loop:
        raise ValueError(f'{loop[0]} is a keyword of downhill\'s training loop; in pm.fit PyMC runs '
                         'the loop (give it n=..., callbacks=...)')
    valid = valid_keywords(cls)
    unknown = {k: v for k, v in hyperparameters.items() if k not in valid}
    hyperparams.reject_unknown(cls.__name__, unknown, valid - set(LOOP_KEYWORDS) - {'reset', 'on_nonfinite'})


class PyMCOptimizer:
    """A downhill algorithm with its hyperparameters, called by PyMC as ``(loss_or_grads, params)``.

    Made by :func:`updates`. Every call builds a fresh downhill optimizer
    (new moments, velocities, update counter), as every call of a PyMC
    optimizer makes new state; :attr:`optimizer` is the latest one.
    """

    def __init__(self, cls, hyperparameters):
        self.algorithm = cls
        self.hyperparameters = dict(hyperparameters)
        #: The downhill optimizer built by the latest call (None before one).
        self.optimizer = None

    def __repr__(self):
        args = ''.join(f', {k}={v!r}' for k, v in self.hyperparameters.items())
        return f'downhill.pymc.updates({spelling(self.algorithm.__name__)!r}{args})'

    def __call__(self, loss_or_grads=None, params=None):
        """The updates of one step, as PyMC's optimizers return them (an ``OrderedDict``)."""
        if loss_or_grads is None and params is None:
            return self  # as PyMC's optimizers, which return a partial when called bare
        if loss_or_grads is None or params is None:
            raise ValueError('give both loss_or_grads and params to get updates')
        params = _check_shared(params)
        if isinstance(loss_or_grads, (list, tuple)):
            self.optimizer = _from_gradients(self.algorithm, list(loss_or_grads), params)
        else:
            self.optimizer = build(self.algorithm, loss_or_grads, params=params, inputs=[])
        pairs = self.optimizer.get_updates(**self.hyperparameters)
        return collections.OrderedDict(pairs)

    def plateau_callback(self, every=100):
        """A ``pm.fit`` callback feeding each ``reduce_on_plateau`` factor among the hyperparameters.

        Every ``every`` steps it hands each factor the mean loss of the last
        ``every`` steps (PyMC's loss history; ``pm.fit`` records it unless
        ``score=False``) as one validation result.
        """
        every = int(hyperparams.number('every', every, low=1))
        observers = [o for v in self.hyperparameters.values() if isinstance(v, schedules.Schedule)
                     for o in v.observers()]

        def callback(approx, losses, i):
            if losses is None or i % every or len(losses) < every:
                return
            window = {'loss': float(losses[-every:].mean())}
            for observer in observers:
                observer.observe(dict(window))  # a new dict each time: observe skips one seen before
        return callback


def _check_shared(params):
    params = list(params)
    for i, p in enumerate(params):
        if not isinstance(p, SharedVariable):
            raise TypeError(f'params[{i}] must be a shared variable, got {hyperparams.shown(p)}')
    return params


def _from_gradients(cls, grads, params):
    r"""An optimizer of ``params`` whose gradients are ``grads``, built from a surrogate loss.

    .. math:: \tilde L(p) = \sum_i \operatorname{sum}(\bar g_i \odot p_i),
              \qquad \bar g_i = \text{disconnected\_grad}(g_i)

    ``disconnected_grad`` keeps :math:`g_i` (which depends on :math:`p_i`)
    constant under differentiation, so the surrogate's gradient with respect
    to :math:`p_i` is :math:`g_i` exactly (PyTensor multiplies it by ones at
    most; :func:`_check_gradients` makes sure).
    """
    if len(grads) != len(params):
        raise ValueError(f'loss_or_grads has {len(grads)} gradients for {len(params)} parameters')
    grads = [_as_gradient(i, g, p) for i, (g, p) in enumerate(zip(grads, params))]
    fixed = [disconnected_grad(g) for g in grads]
    surrogate = pt.add(*[pt.sum(g * p) for g, p in zip(fixed, params)])
    opt = build(cls, surrogate, params=params, inputs=[])
    _check_gradients(opt, fixed)
    # ESGD differentiates the raw gradients again (Hessian-vector products): give it the
    # connected ones, whose derivative is the objective's Hessian, not the surrogate's zero
    opt._raw_grads = dict(zip(params, grads))
    return opt


def _as_gradient(i, grad, param):
    grad = grad if isinstance(grad, Variable) else pt.as_tensor_variable(grad)
    if grad.type.ndim != param.type.ndim:
        raise ValueError(f'loss_or_grads[{i}] has {grad.type.ndim} dimensions; its parameter '
                         f'{param.name or i} has {param.type.ndim}')
    return grad if grad.dtype == param.dtype else pt.cast(grad, param.dtype)


def _check_gradients(opt, fixed):
    """Check that each gradient downhill took of the surrogate is the given one (times ones at most)."""
    for i, (got, want) in enumerate(zip(opt._grads, fixed)):
        if not _is_gradient(got, want):
            raise RuntimeError(f'the gradient downhill computed for params[{i}] is not the one PyMC '
                               f'gave: {pytensor.pprint(got)}')


def _is_gradient(expr, grad):
    """Whether ``expr`` is ``grad`` or a product of ``grad`` and ones (how ``pytensor.grad`` writes it)."""
    if expr is grad:
        return True
    node = expr.owner
    if node is None or getattr(node.op, 'scalar_op', None).__class__.__name__ != 'Mul':
        return False
    rest = [x for x in node.inputs if not _is_ones(x)]
    return len(rest) == 1 and _is_gradient(rest[0], grad)


def _is_ones(var):
    try:
        return bool((pt.get_underlying_scalar_constant_value(var) == 1))
    except NotScalarConstantError:
        return False
