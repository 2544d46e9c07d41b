"""How an algorithm ends a run of the training loop: it raises :class:`StopTraining`."""


class StopTraining(Exception):
    """Raised by a training runner (``opt._train_runner``) to end the loop.

    Its message is the stopping reason that the loop logs (a full-batch
    method that has converged, for instance). The parameters of the last
    update are validated then (they may be the best).
    """


__all__ = ['StopTraining']
