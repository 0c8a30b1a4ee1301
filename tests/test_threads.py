"""Config ``threads`` governs every library on the flight path, whatever the host imported first.

OpenCV runs its ``gemm`` (the keypoint store's PCA projection) on the OpenBLAS it ships with; a host that imports
cv2 or numpy before earthfix gets those OpenBLAS copies at their default thread count, which cost 1.8 ms a
frame on average on 2 cores (``earthfix/onboard/threads.py``). The Localizer must bring them to its ``threads``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from support import localizer_config

HOST = textwrap.dedent("""
    import json, sys
    import cv2, numpy                              # a host's imports, before earthfix's
    from earthfix.onboard.threads import blas_threads, set_blas_threads
    before = set_blas_threads(2) if "--two" in sys.argv else {}
    from earthfix.onboard.localizer import Localizer
    Localizer.load(sys.argv[1], config=json.loads(sys.argv[2]))
    print(json.dumps({"before": before, "after": blas_threads(), "cv2": cv2.getNumThreads()}))
""")


def _host(bundle, threads: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    cfg = json.dumps(dict(localizer_config(), threads=threads))
    out = subprocess.run([sys.executable, "-c", HOST, str(bundle), cfg, "--two"], env=env, capture_output=True,
                         text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_localizer_sets_every_loaded_openblas_to_its_threads(tiny_bundle):
    r = _host(tiny_bundle, threads=1)
    if not r["before"]:
        pytest.skip("no OpenBLAS with a thread setter is loaded here (nothing to govern)")
    assert set(r["before"].values()) == {2}          # the host's two threads were in force before the load
    assert r["after"] and set(r["after"].values()) == {1}, r
    assert r["cv2"] == 1
