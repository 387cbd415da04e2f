"""The ``numba`` training engine: a whole validation window of Adam updates in one call.

Same algorithm as the torch engines (docs/science.md §1, §5; the gradients are written out
in :mod:`..torch_engines`): minibatch Adam on ``L = D + beta R`` on the same batches
(:class:`..batches.BatchStream`). What makes it fast on one CPU core is that the
per-update overhead is gone: one compiled call runs a whole window of updates, every
activation is stored feature-major so every inner loop runs over the batch and
vectorizes, the passes are fused and in place, and the elementary functions are
vectorizable polynomials. One module per job:

:mod:`.intrinsics`   LLVM bit casts (``2**n``, ``frexp``) and the cache prefetch
:mod:`.vecmath`      vectorizable ``exp``, ``log`` and ``sin``/``cos``
:mod:`.rng`          the noise: xoshiro128** lanes and the Box-Muller transform
:mod:`.kernels`      the register-tiled products
:mod:`.update`       one Adam update, a window of updates, the validation sums (the
                     compiled entry points)
:mod:`.engine`       :class:`.engine.NumbaEngine`, the engine protocol on top

The engine runs on the CPU only, single-threaded (no BLAS, no numba threading), and
compiles on first use, cached on disk (``cache=True``).

**One compiled function per entry point.** Every helper is inlined into the entry points
(``INLINE`` below, ``inline="always"`` on the overloads), across the modules of this
package, so that a fresh compile and a cache load run the same machine code and a run's
result does not depend on the state of the cache (tests/training/test_engine_numba.py checks it).
Called, not inlined, numba links a copy of the callee into the caller as a weak symbol,
and which copy runs depends on what the process loaded first: right after a compile, the
callee's own library; from the on-disk cache, the copy inside the caller. The two copies
are optimized separately and, with ``reassoc``, round differently: the first training
after a cold cache differed from all later ones by ~1e-8 (issue 9). Inlined: the same
speed, a first compile of ~8 s instead of ~4 s (once per cache).

**Editing a helper.** numba checks a cached entry point against its own source file
only (:mod:`.update`); a change to an inlined helper in another module of this package
does not invalidate it. After editing one, clear the cache (``find src -name '*.nb[ic]'
-delete``) or touch ``update.py``.
"""

# No 'nnan'/'ninf' (non-finite losses must survive) and no 'arcp'/'afn' (no approximate
# division or library functions); 'reassoc' lets the reductions vectorize (without it the
# engine runs at a third of the speed), at a price: the rounding then depends on the exact
# machine code, which is why every helper is inlined (above).
FASTMATH = {"contract", "reassoc", "nsz"}
JIT = dict(cache=True, fastmath=FASTMATH, error_model="numpy", boundscheck=False, nogil=True)
INLINE = dict(JIT, inline="always")  # every helper of the entry points
