"""Memory figures of the running process, for the scale benchmarks."""


def status(field):
    """A memory figure of this process from /proc/self/status, in bytes (None off Linux).

    ``field``: ``'VmRSS'`` (resident now) or ``'VmHWM'`` (peak resident).
    """
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(field + ':'):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
