"""The reference bundle at flight time: one directory, verified before anything in it is used.

Layout (``format_version`` 1):

    manifest.yaml   format version, encoder SHA-256, basemap source, grid, index parameters, counts,
                    and the SHA-256 and size of every other file
    views.npz       per reference view: lat_deg, lon_deg (float32), scale (int16) -> grid.SCALES_KM
    pca.npz         mean (D,), components (D, d): descriptor compression before the index
    descriptors.npy reduced descriptors, float16 (exact search, rebuilds)
    index.hnsw      hnswlib graph over the reduced descriptors (inner product)
    keystore.npz    verification keypoints per ground area (see keystore.py)

Loading checks every file against the manifest (size, then SHA-256) and the encoder against the one the
bundle was built with; any mismatch raises ``BundleError`` with a one-line reason. Arrays are read from
the verified bytes with ``allow_pickle=False``; nothing is ever unpickled or evaluated.
"""
from __future__ import annotations

import hashlib
import io
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

FORMAT_VERSION = 1
MANIFEST = "manifest.yaml"


class BundleError(RuntimeError):
    """A bundle that must not be used; the message is one line."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(bundle_dir: Path) -> dict:
    path = Path(bundle_dir) / MANIFEST
    if not path.is_file():
        raise BundleError(f"bundle {bundle_dir}: no {MANIFEST}")
    try:
        m = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise BundleError(f"bundle {bundle_dir}: {MANIFEST} is not valid YAML ({type(exc).__name__})") from None
    if not isinstance(m, dict) or "files" not in m or "format_version" not in m:
        raise BundleError(f"bundle {bundle_dir}: {MANIFEST} lacks 'files' or 'format_version'")
    if m["format_version"] != FORMAT_VERSION:
        raise BundleError(f"bundle {bundle_dir}: format_version {m['format_version']!r}, this build reads {FORMAT_VERSION}")
    return m


def verified_bytes(bundle_dir: Path, name: str, manifest: dict) -> bytes:
    entry = manifest["files"].get(name)
    if not isinstance(entry, dict) or "sha256" not in entry:
        raise BundleError(f"bundle {bundle_dir}: {name} is not listed in the manifest")
    path = Path(bundle_dir) / name
    try:
        data = path.read_bytes()
    except OSError:
        raise BundleError(f"bundle {bundle_dir}: {name} is missing") from None
    if "bytes" in entry and len(data) != entry["bytes"]:
        raise BundleError(f"bundle {bundle_dir}: {name} has {len(data)} bytes, manifest says {entry['bytes']} (truncated or altered)")
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise BundleError(f"bundle {bundle_dir}: {name} fails its SHA-256 check (corrupted or altered)")
    return data


def load_npz(data: bytes) -> dict:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@dataclass
class Bundle:
    path: Path
    manifest: dict
    lat: np.ndarray
    lon: np.ndarray
    scale: np.ndarray
    pca_mean: np.ndarray
    pca_components: np.ndarray
    index: object                      # hnswlib.Index
    keystore: object | None = None     # earthfix.onboard.keystore.KeypointStore
    descriptors: np.ndarray | None = None
    scales_km: tuple = field(default_factory=tuple)

    @classmethod
    def load(cls, bundle_dir, encoder_sha256: str | None = None, threads: int = 1,
             load_keystore: bool = True, load_descriptors: bool = False) -> "Bundle":
        import hnswlib
        bundle_dir = Path(bundle_dir)
        if not bundle_dir.is_dir():
            raise BundleError(f"bundle directory not found: {bundle_dir}")
        m = read_manifest(bundle_dir)
        enc = m.get("encoder", {}).get("sha256")
        if encoder_sha256 is not None and enc != encoder_sha256:
            raise BundleError(f"bundle {bundle_dir} was built with encoder {str(enc)[:12]}..., "
                              f"not the loaded encoder {encoder_sha256[:12]}...")
        # verify every file first: a bundle is used whole or not at all
        blobs = {name: verified_bytes(bundle_dir, name, m) for name in m["files"]}
        for needed in ("views.npz", "pca.npz", "index.hnsw"):
            if needed not in blobs:
                raise BundleError(f"bundle {bundle_dir}: manifest lists no {needed}")
        try:
            views = load_npz(blobs["views.npz"])
            pca = load_npz(blobs["pca.npz"])
            dim = int(m["index"]["dim"])
            index = hnswlib.Index(space=m["index"].get("space", "ip"), dim=dim)
            # hnswlib reads only from a path: load a private copy of the verified bytes
            with tempfile.NamedTemporaryFile(suffix=".hnsw", delete=False) as tmp:
                tmp.write(blobs["index.hnsw"])
            try:
                index.load_index(tmp.name, max_elements=int(m["counts"]["views"]))
            finally:
                os.unlink(tmp.name)
            index.set_ef(int(m["index"].get("ef", 64)))
            index.set_num_threads(int(threads))
            keystore = None
            if load_keystore and "keystore.npz" in blobs:
                from .keystore import KeypointStore
                keystore = KeypointStore.from_bytes(blobs["keystore.npz"])
            desc = None
            if load_descriptors and "descriptors.npy" in blobs:
                desc = np.load(io.BytesIO(blobs["descriptors.npy"]), allow_pickle=False)
        except BundleError:
            raise
        except Exception as exc:  # malformed but correctly summed content: still refuse cleanly
            raise BundleError(f"bundle {bundle_dir}: unreadable content ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
        n = int(m["counts"]["views"])
        if len(views["lat"]) != n or index.get_current_count() != n:
            raise BundleError(f"bundle {bundle_dir}: view count disagrees with the manifest")
        return cls(bundle_dir, m, views["lat"].astype(np.float64), views["lon"].astype(np.float64),
                   views["scale"].astype(np.int64), pca["mean"].astype(np.float32),
                   pca["components"].astype(np.float32), index, keystore, desc,
                   tuple(float(s) for s in m["grid"]["scales_km"]))

    @property
    def views(self) -> int:
        return len(self.lat)

    @property
    def bytes(self) -> int:
        return sum(int(e["bytes"]) for e in self.manifest["files"].values()) + (self.path / MANIFEST).stat().st_size

    def reduce(self, desc: np.ndarray) -> np.ndarray:
        """Encoder descriptors (N, D) -> index space (N, d), L2-normalised."""
        z = (np.atleast_2d(desc) - self.pca_mean) @ self.pca_components
        return (z / (np.linalg.norm(z, axis=1, keepdims=True) + 1e-12)).astype(np.float32)

    def search(self, desc: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k views for one descriptor: (indices, cosine similarities), best first."""
        k = min(k, self.views)
        labels, dist = self.index.knn_query(self.reduce(desc), k=k)
        return labels[0].astype(np.int64), (1.0 - dist[0]).astype(np.float32)
