"""The one place where fastbp's Numba compilation options are chosen.

Every kernel is compiled with :data:`JIT_OPTIONS` or one of its variants below:

* ``cache=True``: compiled machine code is kept on disk (``__pycache__`` or
  ``NUMBA_CACHE_DIR``), so a fresh process does not recompile.  Each entry is keyed on a
  hash of every fastbp source file too (:func:`sources_digest`): Numba keys it on the
  kernel's own file alone, and a cached kernel holds the machine code of every helper it
  calls or inlines from other modules, so an edit to a helper left callers' cached code stale.
* ``nogil=True``: kernels release the GIL, so threads (a Dask worker, a
  thread pool) run them in parallel.
* ``fastmath``: only the flags that let LLVM reorder and fuse arithmetic
  (``reassoc``, ``contract``, ``nsz``, ``arcp``).  ``nnan`` and ``ninf`` are
  deliberately left out: they let LLVM delete NaN/inf checks (numba#2919), and
  fastbp must report NaN and inf faithfully.  ``afn`` is left out so that
  ``exp``, ``log`` and ``tanh`` stay the accurate libm functions.
* ``no_cfunc_wrapper=True``: Numba otherwise also builds a C-callable wrapper of
  every compiled function (for ``cfunc``-style first-class function use, which
  fastbp never does); leaving it out makes every cold compile lighter
  (``docs/performance.md``, start-up).  Kernels are still called
  from Python through their ordinary CPython wrapper.

The variants:

* :data:`JIT_VEC` (:func:`jit_vec`): plus ``error_model="numpy"``, for loops that
  should vectorise: a division carrying Python's ZeroDivisionError check (a branch
  to an exception) stops LLVM vectorising.  Every fast kernel and step kernel.
* :data:`JIT_INNER` (:func:`jit_inner`): :data:`JIT_VEC` for helpers only compiled
  code calls: no CPython wrapper is built (one function less to lower and optimise
  per helper on a cold start).  Calling one from Python raises ``TypeError``
  (:class:`HelperDispatcher`; Numba itself would crash the interpreter, numba#2541);
  use its ``py_func``.
* :data:`JIT_INLINE` (:func:`jit_inline`): :data:`JIT_VEC` inlined at Numba-IR level
  into the caller, where LLVM must see the caller's borrowed views (no reference
  counting) or a loop-invariant branch.
* :data:`JIT_PARALLEL`: :data:`JIT_VEC` plus ``parallel=True``, for the threaded
  mini-batch kernel (:func:`compile_as` gives it its own name and cache entry).
* :data:`OVERLOAD_OPTIONS`: the options of :func:`numba.extending.overload`
  implementations (the vectorisable elementary functions).
* :data:`JIT_UNCACHED`: kernels compiled for a user's custom activation.  Numba's own
  cache cannot hold them: it keys a kernel on its source file, name, bytecode and closure,
  and these are the built-in kernels' code re-bound to the user's functions through
  globals, so they would share, and load, the built-in kernels' entries.
  :func:`recompile_with` caches them itself, under a key that adds the source of every
  function re-bound and of the functions those close over (g and g′): see
  :class:`_SourceKeyedCache`.
"""

from __future__ import annotations

import hashlib
import inspect
import types
from pathlib import Path

from numba import njit
from numba.core.caching import FunctionCache
from numba.core.registry import CPUDispatcher

FASTMATH_FLAGS: frozenset[str] = frozenset({"reassoc", "contract", "nsz", "arcp"})

JIT_OPTIONS: dict = {
    "cache": True,
    "nogil": True,
    "fastmath": set(FASTMATH_FLAGS),
    "no_cfunc_wrapper": True,
}

#: The project's options plus the NumPy error model (vectorisable loops).
JIT_VEC: dict = {**JIT_OPTIONS, "error_model": "numpy"}

#: :data:`JIT_VEC` without a CPython wrapper (helpers of other kernels).
JIT_INNER: dict = {**JIT_VEC, "no_cpython_wrapper": True}

#: :data:`JIT_VEC`, inlined into the caller at Numba-IR level.
JIT_INLINE: dict = {**JIT_VEC, "inline": "always"}

#: :data:`JIT_INNER` without fastmath: IEEE arithmetic, no FMA contraction, no reassociation, for
#: elementwise loops whose every path must give the same bits (see :func:`jit_exact`).
JIT_EXACT: dict = {**JIT_INNER, "fastmath": False}

#: :data:`JIT_VEC` with its ``prange`` loops spread over Numba's threads.
JIT_PARALLEL: dict = {**JIT_VEC, "parallel": True}

#: Options of ``@overload`` implementations (the elementary functions' bodies).  ``fastmath`` set
#: here, to FMA contraction alone: unset, an overload inherits its caller's flags, and with
#: ``reassoc`` LLVM folds the Cody–Waite range reduction (x − n·ln2_hi) − n·ln2_lo into
#: x − n·(ln2_hi + ln2_lo), which cost float64 e^x ~200 ulp at |x| = 700 and σ 13 ulp
#: (``python tools/vmath_accuracy.py`` measures it), and could fold the rounding by the shifter,
#: (x / ln 2 + 1.5·2^52) − 1.5·2^52, into x / ln 2 (no rounding at all).
OVERLOAD_OPTIONS: dict = {"error_model": "numpy", "fastmath": {"contract"}}

#: :data:`JIT_OPTIONS` without the on-disk cache (kernels compiled for a custom activation).
JIT_UNCACHED: dict = {key: value for key, value in JIT_OPTIONS.items() if key != "cache"}


class HelperDispatcher(CPUDispatcher):
    """The dispatcher of a helper compiled without a CPython wrapper (:data:`JIT_INNER`,
    :data:`JIT_EXACT`): compiled code calls it as any other, a call from Python raises
    ``TypeError``.  Numba's own dispatcher jumps to the missing wrapper and the interpreter dies
    of a segmentation fault (numba#2541, open since 2017); these helpers sit in importable modules
    (``fastbp.losses.output_loop``), where a user may well try one."""

    def __call__(self, *args, **kwargs):
        name = f"{self.py_func.__module__}.{self.py_func.__qualname__}"
        raise TypeError(
            f"{name} is a helper of fastbp's compiled kernels, compiled without a Python entry point: "
            f"it cannot be called from Python (its plain-Python form is {self.py_func.__name__}.py_func)"
        )


class CheckedDispatcher(CPUDispatcher):
    """The dispatcher of a compiled building block that is public (``fastbp.losses.output_activation``):
    a call from Python first runs the instance's ``python_check(*args)``, which refuses (``TypeError``,
    ``ValueError`` naming the argument) what would take the compiled loop outside its arrays; compiled
    callers call it as before, unchecked (their kernels size the arrays themselves)."""

    python_check = None

    def __call__(self, *args, **kwargs):
        self.python_check(*args, **kwargs)
        return super().__call__(*args, **kwargs)


def checked_from_python(check):
    """Decorator, outside ``@jit``: the compiled function's calls from Python run ``check`` first
    (:class:`CheckedDispatcher`; under ``NUMBA_DISABLE_JIT=1`` the plain function, unchecked, whose
    own indexing is bounds-checked by Python)."""

    def decorate(compiled):
        if type(compiled) is CPUDispatcher:
            compiled.__class__ = CheckedDispatcher
            compiled.python_check = check
        return compiled

    return decorate


_SOURCES_DIGEST: list[str] = []


def sources_digest() -> str:
    """A hash of every fastbp source file (their paths in the package and their bytes), computed
    once per process, on the first look into Numba's cache (691 KB of sources: a few
    milliseconds), not at import."""
    if not _SOURCES_DIGEST:
        root = Path(__file__).resolve().parent
        digest = hashlib.sha256()
        for path in sorted(root.rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
        _SOURCES_DIGEST.append(digest.hexdigest()[:16])
    return _SOURCES_DIGEST[0]


class _PackageKeyedCache(FunctionCache):
    """Numba's on-disk cache of a fastbp kernel, with :func:`sources_digest` added to every entry's
    index key.  Numba keys an entry on the kernel's own source file (its time stamp and size) and
    bytecode, but the entry holds the machine code of every ``@njit`` helper the kernel calls or
    inlines, from any module: an edited helper in ``fastbp/_fast/_columns.py`` left the kernels of
    ``fastbp/_fast/columns.py`` loading their old code from the cache (a working tree, an editable
    install, ``asv`` run on the tree it is in; a fresh install rewrites every file and so every
    time stamp).  With the digest, any edit to the package misses every old entry, and each
    kernel is compiled afresh once."""

    def _index_key(self, sig, codegen):
        return (*super()._index_key(sig, codegen), ("fastbp-sources", sources_digest()))


def _keyed_on_the_package(compiled):
    """``compiled`` with its on-disk cache keyed on the package's sources (:class:`_PackageKeyedCache`),
    where it has Numba's own (``cache=True``; not under ``NUMBA_DISABLE_JIT=1``)."""
    if type(getattr(compiled, "_cache", None)) is FunctionCache:
        compiled._cache = _PackageKeyedCache(compiled.py_func)
    return compiled


def _njit(func, options: dict):
    """``njit(**options)(func)``, cached under :class:`_PackageKeyedCache`, as a :class:`HelperDispatcher`
    where ``options`` build no CPython wrapper (``NUMBA_DISABLE_JIT=1``: ``func`` itself)."""
    compiled = _keyed_on_the_package(njit(**options)(func))
    if options.get("no_cpython_wrapper") and type(compiled) is CPUDispatcher:
        # The same object, compiled and cached exactly as before; only its Python call changes.
        compiled.__class__ = HelperDispatcher
    return compiled


def jit(func):
    """Compile ``func`` with fastbp's :data:`JIT_OPTIONS` (lazily, on first call)."""
    return _njit(func, JIT_OPTIONS)


def jit_vec(func):
    """Compile ``func`` with :data:`JIT_VEC` (the project's options, NumPy error model)."""
    return _njit(func, JIT_VEC)


def jit_inner(func):
    """Compile ``func`` with :data:`JIT_INNER` (a helper of other kernels, not called from Python)."""
    return _njit(func, JIT_INNER)


def jit_exact(func):
    """Compile ``func`` with :data:`JIT_EXACT`: a helper whose elementwise loop must give the same
    bits whichever way LLVM runs it.  A vectorised loop over arrays LLVM cannot prove apart runs
    behind a run-time overlap check, with a scalar copy for the other outcome and for the last
    iterations; with fastmath the copies may contract and reassociate differently (one FMA
    where the other rounds twice), so the bits depended on where the arrays lay in memory (a
    process that compiled a kernel against one that loaded it from the cache).  Without fastmath
    every copy computes the same IEEE operations."""
    return _njit(func, JIT_EXACT)


def jit_inline(func):
    """Compile ``func`` with :data:`JIT_INLINE` (inlined into every caller at Numba-IR level)."""
    return _njit(func, JIT_INLINE)


def jit_uncached(func):
    """Compile ``func`` with :data:`JIT_UNCACHED` (a user's function, never cached on disk)."""
    return njit(**JIT_UNCACHED)(func)


def compile_as(body, name: str, options: dict, rebind: dict | None = None):
    """``body`` (a function, or a dispatcher: its ``py_func``) compiled with ``options`` under its own
    name (and so its own on-disk cache entry: Numba's cache is keyed by the function's qualified
    name, not its options), with the globals in ``rebind`` re-bound: a Numba global is a
    compile-time constant, so a flag re-bound this way makes a second copy of the kernel whose
    branches on it Numba prunes before typing (the column kernels' ``_TILES``).  The copy sees
    the module's globals as they are when it is made (without ``rebind``, the live module
    globals): make it after every name it calls.  ValueError if a name in ``rebind`` is not one
    of ``body``'s globals."""
    body = getattr(body, "py_func", body)
    unknown = set(rebind or ()) - set(body.__globals__)
    if unknown:  # a misspelt name would leave the copy identical to the original
        raise ValueError(f"rebind: {sorted(unknown)} not globals of {body.__qualname__}")
    scope = {**body.__globals__, **rebind} if rebind else body.__globals__
    fn = types.FunctionType(body.__code__, scope, name, body.__defaults__, body.__closure__)
    fn.__qualname__ = name
    fn.__doc__ = body.__doc__
    return _njit(fn, options)


def source_key(functions) -> str | None:
    """A hash of the source of ``functions`` (dispatchers or plain functions) and of every function their
    closures hold, recursively; ``None`` when a source cannot be read (defined in ``python -c`` or
    ``exec``): such functions are then never cached.

    Only closures are followed, not globals: a user's g that calls another ``@njit`` function through
    a global is cached under g's own source alone (Numba's own cache has the same limit).
    """
    digest = hashlib.sha256()
    seen: set[int] = set()

    def visit(obj) -> bool:
        py = getattr(obj, "py_func", obj)
        if not isinstance(py, types.FunctionType):
            return True
        if id(py) in seen:
            return True
        seen.add(id(py))
        try:
            source = inspect.getsource(py)
        except (OSError, TypeError):
            return False
        digest.update(f"{py.__module__}.{py.__qualname__}\n{source}".encode())
        return all(visit(cell.cell_contents) for cell in py.__closure__ or ())

    for function in functions:
        if not visit(function):
            return None
    return digest.hexdigest()


def _source_keyed_cache(py_func, key: str):
    """Numba's on-disk cache for ``py_func``, with ``key`` added to every entry's index key."""
    from numba.core.caching import FunctionCache

    class _SourceKeyedCache(FunctionCache):
        """A :class:`numba.core.caching.FunctionCache` whose index key also holds a hash of the
        re-bound functions' source: kernels re-compiled for a custom activation then get entries
        of their own beside the built-in kernels' (same file, same bytecode, different key)."""

        def _index_key(self, sig, codegen):
            return (*super()._index_key(sig, codegen), ("fastbp-rebound", key))

    return _SourceKeyedCache(py_func)


def recompile_with(kernels: dict, module_globals: dict, overrides: dict) -> dict:
    """Re-compile ``kernels`` (name → dispatcher) from their own source, with globals re-bound.

    Each kernel is rebuilt from its ``py_func``'s code object over a copy of
    ``module_globals`` updated with ``overrides`` (e.g. ``hidden_activation`` bound
    to a user's function) and with the other re-compiled kernels, so calls between
    them stay inside the new set.  Compiled with :data:`JIT_UNCACHED` options and cached on
    disk under :func:`source_key` of the overrides (so a new process with the same g and g′
    loads them; an edited g compiles afresh); not cached when a source cannot be read.
    """
    namespace = dict(module_globals)
    namespace.update(overrides)
    key = source_key(overrides.values())
    out = {}
    for name, dispatcher in kernels.items():
        py = dispatcher.py_func
        clone = types.FunctionType(py.__code__, namespace, py.__name__, py.__defaults__, py.__closure__)
        clone.__doc__ = py.__doc__
        compiled = njit(**JIT_UNCACHED)(clone)
        if key is not None and hasattr(compiled, "_cache"):  # (not under NUMBA_DISABLE_JIT)
            compiled._cache = _source_keyed_cache(clone, key)
        namespace[name] = out[name] = compiled
    return out
