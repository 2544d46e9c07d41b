"""Does compiling a Numba step hold the GIL?  ``python -m benchmarks.gil_compile MODE``

Compiles the raw Adam step of rosenbrock-2d (``pytensor.function`` plus the
Numba machine code, :func:`downhill._compat.precompile`) in a thread while the
main thread

- ``sync``: compiles it itself (no thread; the reference);
- ``idle``: waits;
- ``busy``: spins in pure Python (as a stepping loop in a Python-linker mode would);
- ``dutyK``: spins in slices, each followed by a sleep K times as long (downhill's
  quick start did, with K = 4, until it batched its pauses);
- ``burstK``: spins in slices without a pause until they add up to 1 ms, then
  sleeps K times that (downhill's quick start, K = 4): one hand-over of the
  GIL per burst instead of one per slice.

Prints the compile's wall and thread CPU time, and the share of its solo
speed the main thread kept. Use a fresh compile cache for the cold case:
``PYTENSOR_FLAGS=base_compiledir=$(mktemp -d) python -m benchmarks.gil_compile busy``.
"""

import sys
import threading
import time


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    mode = argv[0] if argv else 'busy'
    import pytensor
    from downhill import _compat
    from . import problems as P

    loss, params, inputs = P.symbolic('rosenbrock-2d')
    ups = P.raw_updates('rosenbrock-2d', params, pytensor.grad(loss, params))
    done = threading.Event()
    res = {}

    def compile_step():
        t, c = time.perf_counter(), time.thread_time()
        fn = pytensor.function(inputs, loss, updates=ups)
        _compat.precompile(fn, ())
        res['compile_wall_s'] = time.perf_counter() - t
        res['compile_cpu_s'] = time.thread_time() - c
        done.set()

    def spin(seconds):
        n, t = 0, time.perf_counter()
        while time.perf_counter() - t < seconds:
            for _ in range(1000):
                pass
            n += 1
        return n / seconds

    solo = spin(1.0)
    if mode == 'sync':
        compile_step()
    else:
        threading.Thread(target=compile_step, daemon=True).start()
        t0, n = time.perf_counter(), 0
        k = float(mode[4:]) if mode.startswith('duty') else None
        burst = float(mode[5:]) if mode.startswith('burst') else None
        if mode == 'busy' or k is not None or burst is not None:
            owed = 0.0
            while not done.is_set():
                t1 = time.perf_counter()
                for _ in range(1000):
                    pass
                n += 1
                if k:
                    time.sleep((time.perf_counter() - t1) * k)
                elif burst:
                    owed += (time.perf_counter() - t1) * burst
                    if owed >= 0.001 * burst:
                        time.sleep(owed)
                        owed = 0.0
        else:
            done.wait()
        res['main_thread_share'] = n / (time.perf_counter() - t0) / solo
    print(mode, {k: round(v, 2) for k, v in res.items()})


if __name__ == '__main__':
    main()
