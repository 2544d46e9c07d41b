r"""Methods that adapt a step size for every parameter element."""

import numpy as np
import pytensor.tensor as pt

from .. import _compat
from ..core import hyperparams
from ..optimizer.base import Optimizer

__all__ = ['RProp', 'ADAGRAD', 'RMSProp', 'ADADELTA', 'ESGD', 'Adam']


class RProp(Optimizer):
    r"""Resilient backpropagation, the iRprop- variant.

    Only the sign of the gradient is used. Every element keeps its own step
    size, which grows while the gradient keeps its sign and shrinks when the
    sign flips; after a flip the gradient is zeroed, so that element does not
    move and the next comparison starts afresh ([Igel00]_, algorithm 4):

    .. math::
        \begin{aligned}
        t &= g_t \, g_{t-1} \\
        \Delta_t &= \operatorname{clip}\left(\Delta_{t-1} \cdot
          \begin{cases} \eta_+ & t > 0 \\ \eta_- & t < 0 \\ 1 & t = 0
          \end{cases}, \ \Delta_{min}, \Delta_{max}\right) \\
        g_t &\leftarrow 0 \text{ where } t < 0 \\
        s_t &= \operatorname{sign}(g_t) \Delta_t
        \end{aligned}

    and :math:`g_{t-1} \leftarrow g_t` (after zeroing). Steps start at the
    learning rate.

    Hyperparameters: ``learning_rate`` (initial step, 1e-4),
    ``rprop_increase`` :math:`\eta_+` (1.01), ``rprop_decrease`` :math:`\eta_-`
    (0.99), ``rprop_min_step`` :math:`\Delta_{min}` (0), ``rprop_max_step``
    :math:`\Delta_{max}` (100); as attributes ``step_increase``,
    ``step_decrease``, ``min_step``, ``max_step``.

    For proximal operators (:mod:`downhill.core.prox`) the step is read as a
    preconditioned gradient step, :math:`s_t = (\Delta_t / |g_t|)\, g_t`,
    so the per-element step size is :math:`\Delta_t / |g_t|` (the raw
    gradient, before zeroing; :math:`\Delta_t` where :math:`g_t = 0`).

    References
    ----------
    .. [Ried92] M. Riedmiller & H. Braun (1992) "Rprop - a fast adaptive
       learning algorithm." Proc. ISCIS VII.
    .. [Igel00] C. Igel & M. Hüsken (2000) "Improving the Rprop learning
       algorithm." Proc. NC 2000.
    """

    _graph_attrs = ()

    def _prepare(self, rprop_increase=1.01, rprop_decrease=0.99, rprop_min_step=0,
                 rprop_max_step=100, **kwargs):
        number = hyperparams.number
        self._set_hyper('step_increase', number('rprop_increase', rprop_increase, low=0, low_open=True))
        self._set_hyper('step_decrease', number('rprop_decrease', rprop_decrease, low=0, low_open=True))
        self._set_hyper('min_step', number('rprop_min_step', rprop_min_step))
        self._set_hyper('max_step', number('rprop_max_step', rprop_max_step))
        hyperparams.warn_if(rprop_min_step > rprop_max_step, 'rprop_min_step=%s > rprop_max_step=%s: '
                            'every step will be rprop_max_step', rprop_min_step, rprop_max_step)
        super()._prepare(**kwargs)

    def _get_updates_for(self, param, grad):
        h = lambda name: self._hyper(name, param)  # noqa: E731
        grad_prev = self._state(param, 'grad_prev')
        step_prev = self._state(param, 'step', init=lambda: self._current('learning_rate'))
        agreement = grad * grad_prev
        factor = pt.switch(agreement > 0, h('step_increase'),
                           pt.switch(agreement < 0, h('step_decrease'), pt.ones_like(h('step_increase'))))
        step = pt.minimum(h('max_step'), pt.maximum(h('min_step'), step_prev * factor))
        # as a preconditioned gradient step, sign(g) step = (step / |g|) g
        magnitude = abs(grad)
        self._set_step_size(param, pt.switch(magnitude > 0, step / pt.switch(
            magnitude > 0, magnitude, pt.ones_like(magnitude)), step))
        grad = pt.switch(agreement < 0, pt.zeros_like(grad), grad)
        yield param, pt.sign(grad) * step
        yield grad_prev, grad
        yield step_prev, step


class ADAGRAD(Optimizer):
    r"""ADAGRAD: steps scaled by the accumulated squared gradients.

    .. math::
        \begin{aligned}
        G_t &= G_{t-1} + g_t^2 \\
        s_t &= \frac{\alpha\, g_t}{\sqrt{G_t + \epsilon}}
        \end{aligned}

    The sum never decays, so the effective learning rate of each element
    shrinks as training goes on.

    Hyperparameters: ``learning_rate`` :math:`\alpha` (1e-4),
    ``rms_regularizer`` :math:`\epsilon` (1e-8, attribute ``epsilon``).
    The proximal step size is :math:`\alpha / \sqrt{G_t + \epsilon}`.

    References
    ----------
    .. [Duch11] J. Duchi, E. Hazan & Y. Singer (2011) "Adaptive subgradient
       methods for online learning and stochastic optimization." JMLR 12.
    """

    _graph_attrs = ()

    def _prepare(self, rms_regularizer=1e-8, **kwargs):
        self._set_hyper('epsilon', hyperparams.number('rms_regularizer', rms_regularizer, low=0))
        super()._prepare(**kwargs)

    def _get_updates_for(self, param, grad):
        g2_sum = self._state(param, 'g2_sum')
        g2_new = g2_sum + pt.sqr(grad)
        rms = pt.sqrt(g2_new + self._hyper('epsilon', param))
        self._set_step_size(param, self._hyper('learning_rate', param) / rms)
        yield g2_sum, g2_new
        yield param, self._hyper('learning_rate', param) * grad / rms


class _RMSMixin:
    """The ``rms_halflife`` and ``rms_regularizer`` keywords (attributes ``ewma``, ``epsilon``)."""

    def _prepare(self, rms_halflife=14, rms_regularizer=1e-8, **kwargs):
        self._set_hyper('ewma', hyperparams.halflife('rms_halflife', rms_halflife))
        self._set_hyper('epsilon', hyperparams.number('rms_regularizer', rms_regularizer, low=0))
        super()._prepare(**kwargs)

    def _ewma(self, old, new, param):
        """``gamma * old + (1 - gamma) * new``."""
        gamma = self._hyper('ewma', param)
        return gamma * old + (1 - gamma) * new


class RMSProp(_RMSMixin, Optimizer):
    r"""RMSProp in Graves' centred form.

    Steps are scaled by a running estimate of the gradient's standard
    deviation ([Grav13]_, eqs. 38-45):

    .. math::
        \begin{aligned}
        f_t &= \gamma f_{t-1} + (1 - \gamma) g_t \\
        G_t &= \gamma G_{t-1} + (1 - \gamma) g_t^2 \\
        s_t &= \frac{\alpha\, g_t}{\sqrt{G_t - f_t^2 + \epsilon}}
        \end{aligned}

    with :math:`\gamma = e^{-\ln 2 / h}` for the half-life :math:`h`.

    Hyperparameters: ``learning_rate`` :math:`\alpha` (1e-4),
    ``rms_halflife`` :math:`h` (14; attribute ``ewma`` is :math:`\gamma`),
    ``rms_regularizer`` :math:`\epsilon` (1e-8, attribute ``epsilon``; note
    that it sits inside the square root). The proximal step size is
    :math:`\alpha / \sqrt{G_t - f_t^2 + \epsilon}`.

    References
    ----------
    .. [Tiel12] T. Tieleman & G. Hinton (2012) Lecture 6.5, "rmsprop",
       COURSERA: Neural Networks for Machine Learning.
    .. [Grav13] A. Graves (2013) "Generating sequences with recurrent neural
       networks." arXiv:1308.0850.
    """

    _graph_attrs = ()

    def _get_updates_for(self, param, grad):
        g1 = self._state(param, 'g1_ewma')
        g2 = self._state(param, 'g2_ewma')
        g1_new = self._ewma(g1, grad, param)
        g2_new = self._ewma(g2, pt.sqr(grad), param)
        rms = pt.sqrt(g2_new - pt.sqr(g1_new) + self._hyper('epsilon', param))
        self._set_step_size(param, self._hyper('learning_rate', param) / rms)
        yield g1, g1_new
        yield g2, g2_new
        yield param, self._hyper('learning_rate', param) * grad / rms


class ADADELTA(_RMSMixin, Optimizer):
    r"""ADADELTA: steps scaled by the ratio of RMS step to RMS gradient.

    .. math::
        \begin{aligned}
        G_t &= \gamma G_{t-1} + (1 - \gamma) g_t^2 \\
        s_t &= \frac{\sqrt{X_{t-1} + \epsilon}}{\sqrt{G_t + \epsilon}}\, g_t \\
        X_t &= \gamma X_{t-1} + (1 - \gamma) s_t^2
        \end{aligned}

    There is no learning rate: ``learning_rate`` is accepted and ignored.

    Hyperparameters: ``rms_halflife`` (14; attribute ``ewma`` is
    :math:`\gamma = e^{-\ln 2 / h}`), ``rms_regularizer`` :math:`\epsilon`
    (1e-8, attribute ``epsilon``). The proximal step size is
    :math:`\sqrt{X_{t-1} + \epsilon} / \sqrt{G_t + \epsilon}`.

    References
    ----------
    .. [Zeil12] M. Zeiler (2012) "ADADELTA: an adaptive learning rate method."
       arXiv:1212.5701.
    """

    _graph_attrs = ()

    def _get_updates_for(self, param, grad):
        x2 = self._state(param, 'x2_ewma')
        g2 = self._state(param, 'g2_ewma')
        eps = self._hyper('epsilon', param)
        g2_new = self._ewma(g2, pt.sqr(grad), param)
        step = grad * pt.sqrt(x2 + eps) / pt.sqrt(g2_new + eps)
        self._set_step_size(param, pt.sqrt(x2 + eps) / pt.sqrt(g2_new + eps))
        yield g2, g2_new
        yield x2, self._ewma(x2, pt.sqr(step), param)
        yield param, step


class ESGD(_RMSMixin, Optimizer):
    r"""Equilibrated SGD: steps scaled by an estimate of the Hessian's diagonal.

    Each step draws a fresh :math:`r \sim \mathcal{N}(0, I)` and computes the
    exact Hessian-vector product :math:`Hr` symbolically (the Hessian itself
    is never formed). The running mean of :math:`(Hr)^2` estimates the
    squared row norms of the Hessian, the "equilibration" preconditioner of
    [Daup15]_:

    .. math::
        \begin{aligned}
        r &\sim \mathcal{N}(0, I) \\
        D_t &= \gamma D_{t-1} + (1 - \gamma) (H r)^2 \\
        s_t &= \frac{\alpha\, g_t}{\sqrt{D_t} + \epsilon}
        \end{aligned}

    Unlike the paper, which averages :math:`(Hr)^2` over all steps, this uses
    an EWMA with half-life ``rms_halflife``; set it large to approach the
    paper.

    Hyperparameters: ``learning_rate`` :math:`\alpha` (1e-4),
    ``rms_halflife`` (14), ``rms_regularizer`` :math:`\epsilon` (1e-8), and
    ``hv_method``, how :math:`Hr` is built: ``'rop'`` (forward-mode R
    operator on the gradient, the default), ``'lop'`` (reverse mode) or
    ``'grad'`` (gradient of :math:`g \cdot r`). The proximal step size is
    :math:`\alpha / (\sqrt{D_t} + \epsilon)`.

    The random vectors come from ``opt.rng``, a shared
    ``numpy.random.Generator`` (seeded with ``ESGD.seed`` at construction;
    ``opt.rng.set_value(numpy.random.default_rng(SEED))`` reseeds it). Each
    step draws one vector per parameter, in parameter order, and the
    generator's state advances every step.

    References
    ----------
    .. [Daup15] Y. Dauphin, H. de Vries & Y. Bengio (2015) "Equilibrated
       adaptive learning rates for non-convex optimization." NIPS.
       arXiv:1502.04390.
    """

    _graph_attrs = ('hv_method',)
    seed = 20150213

    def __init__(self, *args, **kwargs):
        self.hv_method = 'rop'
        self.rng = _compat.shared_generator(self.seed, name='esgd_rng')
        super().__init__(*args, **kwargs)

    def _prepare(self, hv_method=None, **kwargs):
        if hv_method is not None:
            self.hv_method = hyperparams.choice('hv_method', hv_method, ('rop', 'lop', 'grad'))
        super()._prepare(**kwargs)

    def _build_updates(self):
        self._rng_cursor = self.rng
        return super()._build_updates()

    def _get_updates_for(self, param, grad):
        self._rng_cursor, r = _compat.random_normal(self._rng_cursor, param.shape, param.dtype)
        # The curvature estimate uses the raw gradient: clipping is not part of the loss.
        raw_grad = self._raw_grads[param]
        hv = _compat.hessian_vector(self._loss, raw_grad, param, r, self.hv_method)
        diag = self._state(param, 'D_ewma')
        diag_new = self._ewma(diag, pt.sqr(hv), param)
        size = self._hyper('learning_rate', param) / (pt.sqrt(diag_new) + self._hyper('epsilon', param))
        self._set_step_size(param, size)
        yield diag, diag_new
        yield param, self._hyper('learning_rate', param) * grad / (
            pt.sqrt(diag_new) + self._hyper('epsilon', param))

    def _finish_updates(self):
        return [(self.rng, self._rng_cursor)]


class _MomentsMixin:
    """The ``beta1_halflife``, ``beta2_halflife`` and ``rms_regularizer`` keywords
    (attributes ``beta1``, ``beta2``, ``epsilon``) of the Adam family."""

    def _prepare(self, beta1_halflife=7, beta2_halflife=69, rms_regularizer=1e-8, **kwargs):
        self._set_hyper('beta1', hyperparams.halflife('beta1_halflife', beta1_halflife))
        self._set_hyper('beta2', hyperparams.halflife('beta2_halflife', beta2_halflife))
        self._set_hyper('epsilon', hyperparams.number('rms_regularizer', rms_regularizer, low=0))
        super()._prepare(**kwargs)


class Adam(_MomentsMixin, Optimizer):
    r"""Adam: bias-corrected moving averages of the gradient and its square.

    .. math::
        \begin{aligned}
        t &\leftarrow t + 1 \\
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t \\
        v_t &= \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
        s_t &= \alpha \frac{m_t / (1 - \beta_1^t)}{\sqrt{v_t / (1 - \beta_2^t)} + \epsilon}
        \end{aligned}

    ([King15]_, algorithm 1), with :math:`\beta = e^{-\ln 2 / h}` for the
    half-lives :math:`h` (the defaults 7 and 69 give :math:`\beta_1 \approx
    0.906`, :math:`\beta_2 \approx 0.990`; for torch's 0.9 and 0.999 pass
    ``beta1_halflife=6.58``, ``beta2_halflife=692.8``).

    ``beta1_decay`` :math:`\lambda` (default 1, i.e. off) applies the decay
    of the first preprint, :math:`\beta_{1,t} = \beta_1 \lambda^{t-1}`, to the
    first-moment average (not to its bias correction).

    ``amsgrad=True`` divides by the largest second moment seen so far
    instead ([Redd18]_), bias-corrected as in torch:
    :math:`\hat v_t = \max(\hat v_{t-1}, v_t)`, :math:`s_t = \alpha
    \frac{m_t / (1 - \beta_1^t)}{\sqrt{\hat v_t / (1 - \beta_2^t)} + \epsilon}`,
    so the per-element step size never grows back after a large gradient.

    Hyperparameters: ``learning_rate`` :math:`\alpha` (1e-4),
    ``beta1_halflife`` (7), ``beta2_halflife`` (69), ``rms_regularizer``
    :math:`\epsilon` (1e-8), ``beta1_decay`` (1), ``amsgrad`` (False);
    attributes ``beta1``, ``beta2``, ``epsilon``, ``beta1_decay``,
    ``amsgrad``. For proximal operators (:mod:`downhill.core.prox`) the step size
    is :math:`\alpha / (\sqrt{v_t / (1 - \beta_2^t)} + \epsilon)`.

    References
    ----------
    .. [King15] D. Kingma & J. Ba (2015) "Adam: a method for stochastic
       optimization." ICLR. arXiv:1412.6980.
    .. [Redd18] S. Reddi, S. Kale & S. Kumar (2018) "On the convergence of
       Adam and beyond." ICLR. arXiv:1904.09237.
    """

    _graph_attrs = ('amsgrad', '_beta1_decays')

    def _prepare(self, beta1_decay=1, amsgrad=False, **kwargs):
        self._set_hyper('beta1_decay', hyperparams.number('beta1_decay', beta1_decay, low=0))
        # With the default beta1_decay=1, beta1 * 1**t is beta1: keep it out of the graph.
        self._beta1_decays = float(beta1_decay) != 1
        self.amsgrad = hyperparams.flag('amsgrad', amsgrad)
        super()._prepare(**kwargs)

    def _moments(self, param, grad):
        """The state updates, the bias-corrected first moment and the denominator of the step."""
        h = lambda name: self._hyper(name, param)  # noqa: E731
        t = self._state(param, 't', shape=())
        m = self._state(param, 'm')
        v = self._state(param, 'v')
        t_new = t + 1
        beta1 = h('beta1') * h('beta1_decay') ** t if self._beta1_decays else h('beta1')
        m_new = beta1 * m + (1 - beta1) * grad
        v_new = h('beta2') * v + (1 - h('beta2')) * pt.sqr(grad)
        pairs = [(t, t_new), (m, m_new), (v, v_new)]
        if self.amsgrad:
            v_max = self._state(param, 'v_max')
            v_new = pt.maximum(v_max, v_new)
            pairs.append((v_max, v_new))
        m_hat = m_new / (1 - h('beta1') ** t_new)
        v_hat = v_new / (1 - h('beta2') ** t_new)
        return pairs, m_hat, pt.sqrt(v_hat) + h('epsilon')

    def _get_updates_for(self, param, grad):
        pairs, m_hat, denom = self._moments(param, grad)
        yield from pairs
        self._set_step_size(param, self._hyper('learning_rate', param) / denom)
        yield param, self._hyper('learning_rate', param) * m_hat / denom


del np
