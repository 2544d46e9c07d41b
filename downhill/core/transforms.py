r"""Small symbolic building blocks shared by every algorithm.

Each function takes and returns PyTensor expressions; none creates state or
knows about any particular algorithm, so each can be tested alone and composed
in :meth:`downhill.Optimizer.get_updates`.
"""

import pytensor.tensor as pt

from .. import _compat


def as_dtype(value, dtype):
    """``value`` (a number or scalar expression) in ``dtype``.

    Hyperparameters are held in float64; a float32 parameter must see them
    as float32 or every expression that touches them would upcast.
    """
    if hasattr(value, 'dtype'):
        return value if value.dtype == dtype else pt.cast(value, dtype)
    return pt.constant(value, dtype=dtype)


def clip_gradient_elements(grad, limit):
    r"""Clip each element of ``grad`` to :math:`[-c, c]`, with :math:`c` = ``limit``."""
    limit = as_dtype(limit, grad.dtype)
    return pt.clip(grad, -limit, limit)


def rescale_gradient_norm(grad, max_norm):
    r"""Rescale ``grad`` so that its L2 norm is at most ``max_norm``.

    .. math:: g \leftarrow g \min\left(1, \frac{c}{\|g\|_2}\right)

    A zero gradient stays zero (the ratio is not formed when the norm is 0).
    """
    max_norm = as_dtype(max_norm, grad.dtype)
    norm = _compat.l2_norm(grad)
    one = as_dtype(1, grad.dtype)
    scale = pt.switch(norm > max_norm, max_norm / pt.maximum(norm, max_norm), one)
    return grad * scale


def add_weight_decay(grad, param, decay):
    r"""The gradient of the loss plus that of :math:`\tfrac{\lambda}{2} \lVert p \rVert^2`: :math:`g + \lambda p`."""
    return grad + as_dtype(decay, grad.dtype) * param


def momentum_step(param, step, velocity, mu):
    r"""Classical momentum: :math:`v \leftarrow \mu v - s`, :math:`p \leftarrow p + v`.

    Returns ``(new_velocity, new_param)``.
    """
    new_velocity = mu * velocity - step
    return new_velocity, param + new_velocity


def nesterov_step(param, step, velocity, mu):
    r"""Nesterov momentum in the form of Sutskever et al. (2013), applied to the step.

    .. math::
        v \leftarrow \mu v - s, \qquad p \leftarrow p + \mu v - s

    The stored velocity is the true velocity :math:`\mu v_{old} - s`; the
    parameter moves by :math:`\mu^2 v_{old} - (1 + \mu) s`. Returns
    ``(new_velocity, new_param)``.
    """
    new_velocity = mu * velocity - step
    return new_velocity, param + mu * new_velocity - step
