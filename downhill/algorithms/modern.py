r"""Later members of the Adam family: AdamW, Adamax and NAdam."""

import pytensor.tensor as pt

from ..core import hyperparams
from .adaptive import Adam, _MomentsMixin
from ..optimizer.base import Optimizer

__all__ = ['AdamW', 'Adamax', 'NAdam']


class AdamW(Adam):
    r"""Adam with decoupled weight decay.

    The decay shrinks the parameter directly instead of entering the
    gradient, so it is not divided by Adam's second moment ([Losh19]_,
    algorithm 2, with the schedule multiplier folded into the learning rate
    as in torch):

    .. math::
        s_t = \alpha \left(\frac{m_t / (1 - \beta_1^t)}{\sqrt{v_t / (1 - \beta_2^t)}
              + \epsilon} + \lambda p_{t-1}\right)

    with :math:`m_t` and :math:`v_t` as in :class:`Adam`.

    Here ``weight_decay`` :math:`\lambda` is the decoupled decay (default
    0.01, as torch's ``AdamW``); for every other algorithm, ``weight_decay``
    adds :math:`\lambda p` to the gradient (which is what "Adam with L2"
    does and what this class avoids). With ``weight_decay=0`` AdamW is Adam.
    A learning-rate schedule scales the decay too.

    Hyperparameters: those of :class:`Adam` (including ``amsgrad``), and
    ``weight_decay`` :math:`\lambda` (0.01). The proximal step size is
    Adam's.

    References
    ----------
    .. [Losh19] I. Loshchilov & F. Hutter (2019) "Decoupled weight decay
       regularization." ICLR. arXiv:1711.05101.
    """

    decoupled_weight_decay = True

    def _prepare(self, weight_decay=0.01, **kwargs):
        super()._prepare(weight_decay=weight_decay, **kwargs)

    def _get_updates_for(self, param, grad):
        pairs, m_hat, denom = self._moments(param, grad)
        yield from pairs
        lr = self._hyper('learning_rate', param)
        self._set_step_size(param, lr / denom)
        step = lr * m_hat / denom
        if self.weight_decay > 0:
            step = step + lr * self._hyper('_weight_decay', param) * param
        yield param, step


class Adamax(_MomentsMixin, Optimizer):
    r"""Adamax: Adam with the infinity norm in place of the RMS.

    .. math::
        \begin{aligned}
        t &\leftarrow t + 1 \\
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t \\
        u_t &= \max(\beta_2 u_{t-1}, |g_t|) \\
        s_t &= \frac{\alpha}{1 - \beta_1^t} \frac{m_t}{u_t + \epsilon}
        \end{aligned}

    ([King15a]_, algorithm 2). The paper has no :math:`\epsilon`; it is added
    to the denominator here so that an element whose gradient has always
    been zero does not divide 0 by 0. (torch adds it to :math:`|g_t|`
    inside the maximum instead.) :math:`u` needs no bias correction.

    Hyperparameters: ``learning_rate`` :math:`\alpha` (1e-4),
    ``beta1_halflife`` (7), ``beta2_halflife`` (69) with :math:`\beta =
    e^{-\ln 2 / h}`, ``rms_regularizer`` :math:`\epsilon` (1e-8). The
    proximal step size is :math:`\alpha / (u_t + \epsilon)`.

    References
    ----------
    .. [King15a] D. Kingma & J. Ba (2015) "Adam: a method for stochastic
       optimization." ICLR. arXiv:1412.6980 (section 7.1).
    """

    _graph_attrs = ()

    def _get_updates_for(self, param, grad):
        h = lambda name: self._hyper(name, param)  # noqa: E731
        t = self._state(param, 't', shape=())
        m = self._state(param, 'm')
        u = self._state(param, 'u')
        t_new = t + 1
        m_new = h('beta1') * m + (1 - h('beta1')) * grad
        u_new = pt.maximum(h('beta2') * u, abs(grad))
        size = h('learning_rate') / (u_new + h('epsilon'))
        self._set_step_size(param, size)
        yield t, t_new
        yield m, m_new
        yield u, u_new
        yield param, size * (m_new / (1 - h('beta1') ** t_new))


class NAdam(_MomentsMixin, Optimizer):
    r"""NAdam: Adam with Nesterov momentum.

    The first moment looks one step ahead, with a momentum coefficient
    :math:`\mu_t` that warms up slowly ([Doza16]_, algorithm 2, in the form
    of torch's ``NAdam``):

    .. math::
        \begin{aligned}
        t &\leftarrow t + 1 \\
        \mu_t &= \beta_1 \left(1 - \tfrac12\, 0.96^{t \psi}\right), \quad
        \mu_{t+1} = \beta_1 \left(1 - \tfrac12\, 0.96^{(t + 1) \psi}\right) \\
        \Pi_t &= \Pi_{t-1}\, \mu_t \quad (\Pi_0 = 1) \\
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t \\
        v_t &= \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
        s_t &= \frac{\alpha}{\sqrt{v_t / (1 - \beta_2^t)} + \epsilon}
               \left(\frac{1 - \mu_t}{1 - \Pi_t}\, g_t
               + \frac{\mu_{t+1}}{1 - \Pi_t\, \mu_{t+1}}\, m_t\right)
        \end{aligned}

    Hyperparameters: ``learning_rate`` :math:`\alpha` (1e-4),
    ``beta1_halflife`` (7), ``beta2_halflife`` (69), ``rms_regularizer``
    :math:`\epsilon` (1e-8), ``momentum_decay`` :math:`\psi` (0.004, torch's
    default; attribute ``momentum_decay``). The proximal step size is
    :math:`\alpha / (\sqrt{v_t / (1 - \beta_2^t)} + \epsilon)`.

    References
    ----------
    .. [Doza16] T. Dozat (2016) "Incorporating Nesterov momentum into Adam."
       ICLR workshop.
    """

    _graph_attrs = ()

    def _prepare(self, momentum_decay=0.004, **kwargs):
        self._set_hyper('momentum_decay', hyperparams.number('momentum_decay', momentum_decay, low=0))
        super()._prepare(**kwargs)

    def _get_updates_for(self, param, grad):
        h = lambda name: self._hyper(name, param)  # noqa: E731
        t = self._state(param, 't', shape=())
        product = self._state(param, 'mu_product', init=1.0, shape=())
        m = self._state(param, 'm')
        v = self._state(param, 'v')
        t_new = t + 1
        half = pt.constant(0.5, dtype=param.dtype)
        base = pt.constant(0.96, dtype=param.dtype)
        mu = h('beta1') * (1 - half * base ** (t_new * h('momentum_decay')))
        mu_next = h('beta1') * (1 - half * base ** ((t_new + 1) * h('momentum_decay')))
        product_new = product * mu
        m_new = h('beta1') * m + (1 - h('beta1')) * grad
        v_new = h('beta2') * v + (1 - h('beta2')) * pt.sqr(grad)
        size = h('learning_rate') / (pt.sqrt(v_new / (1 - h('beta2') ** t_new)) + h('epsilon'))
        self._set_step_size(param, size)
        yield t, t_new
        yield product, product_new
        yield m, m_new
        yield v, v_new
        yield param, size * ((1 - mu) / (1 - product_new) * grad
                             + mu_next / (1 - product_new * mu_next) * m_new)
