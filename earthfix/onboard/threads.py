"""Thread counts of every library on the flight path, set from one number (config ``threads``).

onnxruntime and hnswlib take theirs per session / index (``Encoder``, ``PatchDescriber``, ``Bundle.load``); this
module sets the process-wide ones: OpenCV's pool and the OpenBLAS thread count of every OpenBLAS copy loaded in
the process. The second matters because OpenCV hands its ``gemm`` (the keypoint descriptors' PCA projection,
``KeypointStore.project``) to the OpenBLAS it was built with, which is not numpy's copy and which, unless told
before it loads (``OPENBLAS_NUM_THREADS``, set by ``import earthfix`` when nothing else was imported first),
runs a 300 x 128 product on every core: measured 0.09 ms at one thread against 3.8 / 6.3 ms at p90 / p99 with
two threads on a 2-core machine, 1.8 ms a frame on average (docs/BENCHMARKS.md, "OpenBLAS threads").

No library in the flight dependencies does this (threadpoolctl is not one), hence the few lines of ctypes here:
best effort, Linux (``/proc/self/maps`` lists what is loaded); elsewhere nothing is changed.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

# OpenBLAS's own build, numpy's scipy-openblas build; "64_": their 64-bit-integer variants
_SETTERS = tuple(f"{p}set_num_threads{s}" for p in ("openblas_", "scipy_openblas_") for s in ("", "64_"))


def loaded_openblas() -> list[str]:
    """Paths of the OpenBLAS libraries loaded in this process (Linux; [] where it cannot tell)."""
    try:
        maps = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return []
    paths = {ln.split()[-1] for ln in maps if "openblas" in ln.lower() and ln.split()[-1].startswith("/")}
    return sorted(paths)


def _openblas_calls():
    """(library path, set_num_threads, get_num_threads or None) of every loaded OpenBLAS copy with a setter."""
    for path in loaded_openblas():
        try:
            lib = ctypes.CDLL(path)          # already loaded: the same handle, nothing is loaded anew
        except OSError:
            continue
        for name in _SETTERS:
            setter = getattr(lib, name, None)
            if setter is not None:
                yield path, setter, getattr(lib, name.replace("set_", "get_"), None)
                break


def blas_threads() -> dict[str, int]:
    """{library path: thread count in force} of every loaded OpenBLAS copy that reports it."""
    return {path: int(getter()) for path, _, getter in _openblas_calls() if getter is not None}


def set_blas_threads(n: int) -> dict[str, int]:
    """Set ``n`` threads in every loaded OpenBLAS copy; returns {library path: thread count now in force} for
    those that expose a setter."""
    done = {}
    for path, setter, getter in _openblas_calls():
        setter(ctypes.c_int(int(n)))
        done[path] = int(getter()) if getter is not None else int(n)
    return done


def limit_threads(n: int) -> dict[str, int]:
    """OpenCV's thread pool and every loaded OpenBLAS to ``n`` threads; returns :func:`set_blas_threads`'s map."""
    import cv2
    cv2.setNumThreads(int(n))
    return set_blas_threads(n)
