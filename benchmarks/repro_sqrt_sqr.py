"""Minimal reproducer: PyTensor 2.38 rewrites sqrt(sqr(x)) into switch(x >= 0, x, nan).

``local_sqrt_sqr`` in pytensor/tensor/rewriting/math.py (2.38.x) has its two
cases swapped: ``sqrt(sqr(x))`` should become ``|x|`` and ``sqr(sqrt(x))``
``switch(x >= 0, x, nan)``. PyTensor 3.x has it right. The graph appears in a
gradient norm ``sqrt(sum(sqr(g)))`` once the sum over a single element is
removed, so norm clipping of a 0-d parameter silently did nothing when its
gradient was negative. downhill squares ``|g|`` instead (``_compat.l2_norm``).

    python benchmarks/repro_sqrt_sqr.py     # 2.38: prints nan; 3.x: prints 2.0
"""

import pytensor
import pytensor.tensor as pt

x = pt.dscalar('x')
f = pytensor.function([x], pt.sqrt(pt.sqr(x)), mode='FAST_RUN')
print('pytensor', pytensor.__version__, 'sqrt(sqr(-2.0)) =', f(-2.0))
