"""Which Numba compile targets this host can run: the tests that recompile the kernels for another
CPU (``NUMBA_CPU_NAME=… NUMBA_CPU_FEATURES=``) in a fresh process skip hosts that cannot run that code."""

from __future__ import annotations


def host_runs(features: tuple[str, ...]) -> bool:
    """Whether code compiled for a target needing these LLVM ``features`` runs here (x86-64)."""
    import platform

    import llvmlite.binding as llvm

    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    host = llvm.get_host_cpu_features()
    return all(host.get(f) for f in features)
