"""EarthFix: where is the satellite, from what its camera sees of the Earth.

Package layout, in pipeline order:

- ``earthfix.sim``     ground segment: orbits, attitude, basemap, renderer, effects, scenarios
- ``earthfix.tools``   ground segment: encoder training/export, bundle building, evaluation
- ``earthfix.onboard`` flight code: encoder, retrieval, verification, fix, fusion
  (depends on numpy, onnxruntime, hnswlib, opencv and pyyaml only)

Conventions (frames, units, angles, contracts) are those of CONVENTIONS.md, summarised in
``docs/CONVENTIONS.md``: WGS84 geodetic degrees, ECEF km, UTC, yaw clockwise from north of the
image's up direction.
"""

import os as _os

# One BLAS thread unless the caller says otherwise: the onboard path does only small matrix products,
# where a multi-threaded BLAS costs milliseconds of thread wake-up (measured: 0.5-2.8 ms per call).
_os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
