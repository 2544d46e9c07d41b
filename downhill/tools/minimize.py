"""The one-call interface."""

from ..optimizer.base import build
from ..training.dataset import Dataset, as_dataset


def _wrap(data, name, batch_size, iteration_size):
    if data is None or isinstance(data, Dataset):
        return as_dataset(data, name, batch_size)
    if callable(data) or (isinstance(data, (list, tuple)) and data
                          and not any(isinstance(x, (list, tuple)) for x in data)):
        return Dataset(data, name=name, batch_size=batch_size, iteration_size=iteration_size)
    return as_dataset(data, name, batch_size)


def minimize(loss, train, valid=None, params=None, inputs=None, algo='rmsprop', updates=(),
             monitors=(), monitor_gradients=False, batch_size=32, train_batches=None,
             valid_batches=None, mode=None, constraints=None, quick_start=False, fast_tanh=True,
             **kwargs):
    """Minimize a loss in one call.

    Builds the optimizer named ``algo`` (see :func:`downhill.build`) and runs
    :meth:`~downhill.Optimizer.iterate` until it stops; the parameters are
    left at the best values found.

    Parameters
    ----------
    loss : scalar PyTensor expression
        The loss to minimize.
    train : Dataset, list of arrays, list of batches, callable or None
        Training data; raw arrays are batched with ``batch_size``.
    valid : same forms, optional
        Validation data (default: ``train``).
    params, inputs, updates, monitors, monitor_gradients, mode, constraints, quick_start, fast_tanh
        As for :func:`downhill.build` (``constraints``: projections and
        proximal operators from :mod:`downhill.core.prox`).
    algo : str
        The algorithm's name. Default ``'rmsprop'``.
    batch_size : int
        Rows per mini-batch for raw arrays. Default 32.
    train_batches, valid_batches : int, optional
        Batches per iteration (the ``iteration_size`` of the datasets made
        from raw arrays or callables).
    **kwargs
        Hyperparameters and loop settings for :meth:`~downhill.Optimizer.iterate`.

    Returns
    -------
    (train_monitors, valid_monitors) : pair of OrderedDict
        The monitors of the last iteration.
    """
    train = _wrap(train, 'train', batch_size, train_batches)
    if valid is not None:
        valid = _wrap(valid, 'valid', batch_size, valid_batches)
    opt = build(algo, loss, params=params, inputs=inputs, updates=updates, monitors=monitors,
                monitor_gradients=monitor_gradients, mode=mode, constraints=constraints,
                quick_start=quick_start, fast_tanh=fast_tanh)
    return opt.minimize(train, valid, batch_size=batch_size, **kwargs)
