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


def write_results(rows, table, json_path=None, md_path=None):
    """Print the Markdown ``table``; write ``rows`` (with the command line) and the table as asked."""
    import json
    import sys
    print(table)
    if json_path:
        with open(json_path, 'w') as f:
            json.dump(dict(rows=rows, python=sys.version, argv=sys.argv), f, indent=1)
    if md_path:
        with open(md_path, 'w') as f:
            f.write(table)
