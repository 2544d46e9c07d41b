r"""First-order methods with a single global learning rate."""

from ..optimizer.base import Optimizer

__all__ = ['SGD', 'NAG']


class SGD(Optimizer):
    r"""Stochastic gradient descent.

    Each update moves the parameters against the gradient of the loss on
    one mini-batch:

    .. math::
        s_t = \alpha \frac{\partial \mathcal{L}}{\partial p}, \qquad
        p_{t+1} = p_t - s_t

    With ``momentum`` :math:`\mu > 0` a velocity accumulates the steps,
    :math:`v_{t+1} = \mu v_t - s_t`, :math:`p_{t+1} = p_t + v_{t+1}`; with
    ``nesterov=True`` the parameter moves by :math:`\mu v_{t+1} - s_t` instead
    (see :class:`NAG`).

    Hyperparameters: ``learning_rate`` :math:`\alpha` (default 1e-4),
    ``momentum``, ``nesterov``, and the gradient clipping options of
    :class:`Optimizer`. The proximal step size (:mod:`downhill.core.prox`) is
    :math:`\alpha`: with a proximal operator, SGD is proximal gradient
    descent (ISTA).

    References
    ----------
    .. [Robb51] H. Robbins & S. Monro (1951) "A stochastic approximation
       method." Annals of Mathematical Statistics 22(3):400-407.
    """

    _graph_attrs = ()

    def _get_updates_for(self, param, grad):
        yield param, self._hyper('learning_rate', param) * grad


class NAG(SGD):
    r"""Stochastic gradient descent with Nesterov's accelerated gradient.

    This is :class:`SGD` with Nesterov momentum always on, in the
    reformulation of [Suts13]_ (eq. 7) and [Beng12]_ that evaluates the
    gradient at the current parameters:

    .. math::
        \begin{aligned}
        s_t &= \alpha \frac{\partial \mathcal{L}}{\partial p}(p_t) \\
        v_{t+1} &= \mu v_t - s_t \\
        p_{t+1} &= p_t + \mu v_{t+1} - s_t
                 = p_t + \mu^2 v_t - (1 + \mu) s_t
        \end{aligned}

    The stored velocity is the true velocity :math:`v_{t+1}`. (The Theano-era
    downhill stored the parameter move instead, which made the effective
    momentum :math:`\mu^2`; this follows the paper.) With ``momentum=0``
    (the default) NAG is plain SGD: set ``momentum``, e.g. 0.9.

    References
    ----------
    .. [Nest83] Y. Nesterov (1983) "A method of solving a convex programming
       problem with convergence rate O(1/k^2)." Soviet Mathematics Doklady 27.
    .. [Suts13] I. Sutskever, J. Martens, G. Dahl & G. Hinton (2013) "On the
       importance of initialization and momentum in deep learning." ICML.
    .. [Beng12] Y. Bengio, N. Boulanger-Lewandowski & R. Pascanu (2012)
       "Advances in optimizing recurrent networks." arXiv:1212.0901.
    """

    def _prepare(self, **kwargs):
        kwargs.pop('nesterov', None)
        super()._prepare(nesterov=True, **kwargs)
