"""The keypoint store: local features of the reference imagery, stored per ground area.

Each keypoint is stored once, with its geodetic position, not once per reference view: storage grows with
the land area covered, not with the number of views, scales or rotations the retrieval index holds.

Arrays (all keypoints sorted by grid cell):
- ``lat``, ``lon``: float32 geodetic degrees (lon in [-180, 180)).
- ``desc``: uint8 N x D, the RootSIFT descriptor projected on ``D`` PCA components and quantised per
  component: ``q = clip(round(p / qstep) + 128, 0, 255)``; :meth:`KeypointStore.decode` inverts it.
- ``size_km``: float16 keypoint diameter on the ground (km).
- ``azimuth``: uint8 orientation of the keypoint as a ground azimuth (clockwise from north),
  ``azimuth_deg = azimuth * 360 / 256``. A frame keypoint of image angle ``a`` (OpenCV, degrees) seen with
  yaw ``psi`` (CONVENTIONS) has ground azimuth ``a + 90 + psi``: the verifier votes on ``psi`` with it.
- Grid index: cells of ``cell_deg`` x ``cell_deg`` (row 0 at lat -90, column 0 at lon -180), row-major;
  keypoints of cell ``c`` are ``cell_start[c]:cell_start[c + 1]``.
- PCA: ``pca_mean`` (128), ``pca_components`` (D x 128), ``qstep`` (D) float32.
- ``meta``: a JSON string (build configuration, feature configuration, statistics, and ``descriptor``:
  ``{"kind": "rootsift"}`` or ``{"kind": "patchnet", "sha256": ...}``, the learned local descriptor's
  network, see ``localdesc``; stores without the key are RootSIFT).

A store built with a learned descriptor must describe frames with the same network: it is attached as
:attr:`KeypointStore.describer` (``Bundle.load`` does it from the bundle's ``localdesc.onnx``, checked
against ``descriptor.sha256``), and :meth:`KeypointStore.describer_for_frames` refuses to go on without it.

Files are uncompressed ``.npz`` (``np.savez``, no pickle) so that :meth:`load` can memory-map every array
in place; nothing is unpickled at load (``allow_pickle=False``).
"""
from __future__ import annotations

import io
import json
import math
import zipfile
from pathlib import Path

import cv2
import numpy as np

from . import geodesy

FORMAT_VERSION = 1
_ARRAYS = ("lat", "lon", "desc", "size_km", "azimuth", "cell_start", "pca_mean", "pca_components", "qstep")


class KeystoreError(ValueError):
    """A keypoint store file that cannot be used."""


class KeypointStore:
    """Global (or regional) keypoints with a lat/lon grid index for radius queries."""

    def __init__(self, lat, lon, desc, size_km, azimuth, cell_start, pca_mean, pca_components, qstep,
                 cell_deg: float, meta: dict | None = None):
        self.lat = lat
        self.lon = lon
        self.desc = desc
        self.size_km = size_km
        self.azimuth = azimuth
        # small arrays in RAM (element access on a memmap is slow); the big ones may stay mapped
        self.cell_start = np.array(cell_start, dtype=np.int64)
        self.pca_mean = np.array(pca_mean, dtype=np.float32)
        self.pca_components = np.ascontiguousarray(pca_components, dtype=np.float32)
        self.qstep = np.array(qstep, dtype=np.float32)
        self.cell_deg = float(cell_deg)
        self.n_rows = int(round(180.0 / self.cell_deg))
        self.n_cols = int(round(360.0 / self.cell_deg))
        self.meta = dict(meta or {})
        self.describer = None      # localdesc.PatchDescriber of a patchnet store (attach_describer)
        if len(self.cell_start) != self.n_rows * self.n_cols + 1:
            raise KeystoreError("keystore: cell index does not match cell_deg")

    # ---- construction ----------------------------------------------------------------------------
    @classmethod
    def from_unsorted(cls, lat, lon, desc_q, size_km, azimuth, pca_mean, pca_components, qstep,
                      cell_deg: float = 2.0, meta: dict | None = None) -> "KeypointStore":
        """Sort keypoints by grid cell and build the index."""
        if not (0 < cell_deg <= 30 and abs(180.0 / cell_deg - round(180.0 / cell_deg)) < 1e-9):
            raise KeystoreError("cell_deg must divide 180")
        lat = np.asarray(lat, dtype=np.float32)
        lon = geodesy.wrap_lon(np.asarray(lon, dtype=np.float64)).astype(np.float32)
        n_rows, n_cols = int(round(180 / cell_deg)), int(round(360 / cell_deg))
        cell = _cell_of(lat, lon, cell_deg, n_rows, n_cols)
        # secondary keys make the order (and so the file) deterministic
        order = np.lexsort((lon, lat, cell))
        cell = cell[order]
        start = np.searchsorted(cell, np.arange(n_rows * n_cols + 1)).astype(np.int32)
        return cls(lat[order], lon[order], np.ascontiguousarray(desc_q[order], dtype=np.uint8),
                   np.asarray(size_km, dtype=np.float16)[order], np.asarray(azimuth, dtype=np.uint8)[order],
                   start, pca_mean, pca_components, qstep, cell_deg, meta)

    # ---- persistence -----------------------------------------------------------------------------
    def save(self, path) -> None:
        meta = dict(self.meta)
        meta.update(format_version=FORMAT_VERSION, cell_deg=self.cell_deg)
        arrays = {k: np.ascontiguousarray(getattr(self, k)) for k in _ARRAYS}
        arrays["meta"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
        path = Path(path)
        with open(path, "wb") as f:      # a file object: np.savez must not append '.npz'
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path, mmap: bool = True) -> "KeypointStore":
        """Load a store; with ``mmap`` the arrays are memory-mapped from the file (read-only)."""
        path = Path(path)
        if not path.exists():
            raise KeystoreError(f"keystore not found: {path}")
        try:
            arrays = _npz_mmap(path) if mmap else None
            if arrays is None:
                with np.load(path, allow_pickle=False) as z:
                    arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise KeystoreError(f"keystore {path} is not readable: {exc}") from None
        return cls._from_arrays(arrays, str(path))

    @classmethod
    def from_bytes(cls, blob: bytes) -> "KeypointStore":
        """A store from the bytes of a saved file (e.g. verified bundle content); arrays are views of
        ``blob`` (no copy) when the file is uncompressed."""
        try:
            arrays = _npz_views(memoryview(blob))
            if arrays is None:
                with np.load(io.BytesIO(blob), allow_pickle=False) as z:
                    arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise KeystoreError(f"keystore bytes are not readable: {exc}") from None
        return cls._from_arrays(arrays, "<bytes>")

    @classmethod
    def _from_arrays(cls, arrays: dict, where: str) -> "KeypointStore":
        missing = [k for k in _ARRAYS + ("meta",) if k not in arrays]
        if missing:
            raise KeystoreError(f"keystore {where} lacks arrays {missing}")
        meta = json.loads(bytes(np.asarray(arrays["meta"])).decode())
        if meta.get("format_version") != FORMAT_VERSION:
            raise KeystoreError(f"keystore {where}: format_version {meta.get('format_version')} "
                                f"!= {FORMAT_VERSION}")
        return cls(*(arrays[k] for k in _ARRAYS), cell_deg=meta["cell_deg"], meta=meta)

    # ---- the descriptor ----------------------------------------------------------------------------
    @property
    def descriptor(self) -> dict:
        """How the store's descriptors were made: ``{"kind": "rootsift"}`` or ``{"kind": "patchnet",
        "sha256": ...}``."""
        return dict(self.meta.get("descriptor") or {"kind": "rootsift"})

    def attach_describer(self, describer) -> None:
        """Attach the learned descriptor the store was built with; another network is refused."""
        d = self.descriptor
        if d["kind"] != "patchnet":
            raise KeystoreError("keystore: built with RootSIFT, a learned local descriptor cannot be attached")
        if describer.sha256 != d.get("sha256"):
            raise KeystoreError(f"keystore: built with local descriptor {str(d.get('sha256'))[:12]}..., "
                                f"not {describer.sha256[:12]}...")
        self.describer = describer

    def describer_for_frames(self):
        """What ``features.extract_features`` must describe frames with for this store: None (RootSIFT) or
        the attached network; a patchnet store without one raises ``KeystoreError``."""
        if self.descriptor["kind"] == "rootsift":
            return None
        if self.describer is None:
            raise KeystoreError("keystore: built with a learned local descriptor that is not attached "
                                "(load the store through its bundle)")
        return self.describer

    # ---- queries ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.lat.shape[0])

    @property
    def dim(self) -> int:
        return int(self.desc.shape[1])

    @property
    def gsd_km(self) -> float:
        """Ground sample (km per pixel) of the map tiles the store was built from (its build record; 6.0,
        the builder's default, for a store without one)."""
        return float(self.meta.get("build", {}).get("gsd_km", 6.0))

    @property
    def nbytes(self) -> int:
        return int(sum(np.asarray(getattr(self, k)).nbytes for k in _ARRAYS))

    def query(self, lat_deg: float, lon_deg: float, radius_km: float) -> np.ndarray:
        """Indices (int64, ascending) of keypoints within ``radius_km`` (great circle) of a point."""
        cells = self._cells_near(lat_deg, lon_deg, radius_km)
        if not cells:
            return np.zeros(0, np.int64)
        cs = self.cell_start
        idx = np.concatenate([np.arange(cs[c], cs[c + 1]) for c in cells])
        if idx.size == 0:
            return idx.astype(np.int64)
        d = geodesy.great_circle_km(lat_deg, lon_deg, self.lat[idx].astype(np.float64),
                                    self.lon[idx].astype(np.float64))
        return np.sort(idx[d <= radius_km]).astype(np.int64)

    def _cells_near(self, lat_deg, lon_deg, radius_km) -> list[int]:
        dlat = math.degrees(radius_km / geodesy.R_MEAN_KM)
        lat0, lat1 = lat_deg - dlat, lat_deg + dlat
        r0 = max(0, int(math.floor((lat0 + 90.0) / self.cell_deg)))
        r1 = min(self.n_rows - 1, int(math.floor((lat1 + 90.0) / self.cell_deg)))
        if lat0 <= -90.0 or lat1 >= 90.0:
            all_lon = True
        else:
            # widest longitude span of the cap is at the latitude nearest the pole inside it
            phi = math.radians(max(abs(lat0), abs(lat1)))
            s = math.sin(radius_km / geodesy.R_MEAN_KM) / max(math.cos(phi), 1e-9)
            all_lon = s >= 1.0
            dlon = 180.0 if all_lon else math.degrees(math.asin(s)) + 1e-6
        cells = []
        for r in range(r0, r1 + 1):
            base = r * self.n_cols
            if all_lon:
                cols = range(self.n_cols)
            else:
                c0 = int(math.floor((lon_deg - dlon + 180.0) / self.cell_deg))
                c1 = int(math.floor((lon_deg + dlon + 180.0) / self.cell_deg))
                if c1 - c0 + 1 >= self.n_cols:
                    cols = range(self.n_cols)
                else:
                    cols = (c % self.n_cols for c in range(c0, c1 + 1))
            for c in cols:
                cid = base + c
                if self.cell_start[cid + 1] > self.cell_start[cid]:
                    cells.append(cid)
        return cells

    def truncated(self, dim: int) -> "KeypointStore":
        """The same store with descriptors cut to the first ``dim`` PCA components.

        PCA components are nested, so this equals a store built with ``pca_dim=dim`` (same quantiser)."""
        dim = int(dim)
        if not (1 <= dim <= self.dim):
            raise KeystoreError(f"cannot truncate {self.dim}-D descriptors to {dim}")
        meta = dict(self.meta)
        meta["truncated_from"] = self.dim
        out = KeypointStore(self.lat, self.lon, np.ascontiguousarray(self.desc[:, :dim]), self.size_km,
                            self.azimuth, self.cell_start, self.pca_mean, self.pca_components[:dim],
                            self.qstep[:dim], self.cell_deg, meta)
        out.describer = self.describer
        return out

    # ---- descriptors -----------------------------------------------------------------------------
    def project(self, desc_rootsift: np.ndarray) -> np.ndarray:
        """Frame descriptors (N x 128: RootSIFT, or the store's learned descriptor) to the store's PCA
        space (float32 N x D), unquantised."""
        # cv2.gemm, not numpy's matmul: a multi-threaded BLAS spins up threads for this small product
        # (measured 0.5-2.8 ms wall vs 0.04 ms single-threaded on the shared 2-core machine)
        d = np.ascontiguousarray(desc_rootsift, dtype=np.float32) - self.pca_mean
        if d.shape[0] == 0:
            return np.zeros((0, self.dim), np.float32)
        return cv2.gemm(d, self.pca_components, 1.0, None, 0.0, flags=cv2.GEMM_2_T)

    def decode(self, idx) -> np.ndarray:
        """Stored descriptors of ``idx`` in the PCA space (float32 N x D)."""
        q = np.asarray(self.desc[idx], dtype=np.float32)
        return (q - 128.0) * self.qstep

    def azimuth_deg(self, idx) -> np.ndarray:
        return np.asarray(self.azimuth[idx], dtype=np.float32) * (360.0 / 256.0)

    def stats(self) -> dict:
        return {"keypoints": len(self), "bytes": self.nbytes, "dim": self.dim,
                "bytes_per_keypoint": self.nbytes / max(len(self), 1), "cell_deg": self.cell_deg}


def quantise(p: np.ndarray, qstep: np.ndarray) -> np.ndarray:
    """PCA coefficients to uint8 codes (see module docstring)."""
    return np.clip(np.round(np.asarray(p, np.float32) / qstep) + 128.0, 0, 255).astype(np.uint8)


def _cell_of(lat, lon, cell_deg, n_rows, n_cols) -> np.ndarray:
    r = np.clip(np.floor((np.asarray(lat, np.float64) + 90.0) / cell_deg).astype(np.int64), 0, n_rows - 1)
    c = np.floor((np.asarray(lon, np.float64) + 180.0) / cell_deg).astype(np.int64) % n_cols
    return r * n_cols + c


def _members(f, infos):
    """(name, dtype, shape, fortran, data offset) of each .npy member of an uncompressed zip."""
    for info in infos:
        if not info.filename.endswith(".npy"):
            continue
        f.seek(info.header_offset)
        local = f.read(30)
        if local[:4] != b"PK\x03\x04":
            raise ValueError("corrupt zip member header")
        name_len = int.from_bytes(local[26:28], "little")
        extra_len = int.from_bytes(local[28:30], "little")
        f.seek(info.header_offset + 30 + name_len + extra_len)
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy version {version}")
        if dtype.hasobject:
            raise ValueError("object arrays are not allowed")
        nbytes = int(np.prod(shape)) * dtype.itemsize
        if f.tell() + nbytes > info.header_offset + 30 + name_len + extra_len + info.file_size:
            raise ValueError(f"member {info.filename} is truncated")
        yield info.filename[:-4], dtype, tuple(shape), fortran, f.tell()


def _stored_infos(fileobj):
    with zipfile.ZipFile(fileobj) as zf:
        infos = zf.infolist()
    if any(i.compress_type != zipfile.ZIP_STORED for i in infos):
        return None
    return infos


def _npz_mmap(path: Path) -> dict | None:
    """Memory-map the members of an uncompressed .npz; None if any member is compressed."""
    infos = _stored_infos(path)
    if infos is None:
        return None
    out = {}
    with open(path, "rb") as f:
        for name, dtype, shape, fortran, offset in list(_members(f, infos)):
            if int(np.prod(shape)) == 0:
                out[name] = np.zeros(shape, dtype)
            else:
                out[name] = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                                      order="F" if fortran else "C")
    return out


def _npz_views(buf: memoryview) -> dict | None:
    """Read-only array views into the bytes of an uncompressed .npz; None if any member is compressed."""
    f = io.BytesIO(buf)
    infos = _stored_infos(f)
    if infos is None:
        return None
    out = {}
    for name, dtype, shape, fortran, offset in list(_members(f, infos)):
        n = int(np.prod(shape))
        a = np.frombuffer(buf, dtype=dtype, count=n, offset=offset)
        out[name] = a.reshape(shape, order="F" if fortran else "C")
    return out
