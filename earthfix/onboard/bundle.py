"""The reference bundle at flight time: one directory, verified before anything in it is used.

Layout (``format_version`` 1):

    manifest.yaml   format version, encoder SHA-256, basemap source, grid, index parameters, counts,
                    and the SHA-256 and size of every other file
    views.npz       per reference view: lat_deg, lon_deg (float32), scale (int16) -> grid.SCALES_KM
    pca.npz         mean (D,), components (D, d): descriptor compression before the index
    descriptors.npy reduced descriptors, float16 (exact search, rebuilds)
    index.hnsw      hnswlib graph over the reduced descriptors (inner product). With manifest
                    ``index.turns`` T > 1 (encoders trained for +-45 deg of yaw, models/encoder.json
                    ``reference_turns``) every view is stored T times, its reference turned by
                    0, 90, 180, 270 deg: label = view * T + turn; ``search`` returns views
    keystore.npz    verification keypoints per ground area (see keystore.py), sampled for the wide cameras
    keystore_fine.npz optional: the same at a finer sample (manifest 'keystore.fine_gsd_km'), verified
                    against by cameras whose working pixel is finer than keystore.npz's (Localizer.verifier_for)
    keystore_lowres.npz, keyindex_lowres.graph
                    optional, together: the low-resolution keypoint store: the same maps area-averaged to coarse imagery
                    (manifest 'keystore.lowres_map_px' pixels around the globe) and its voting index (manifest
                    'keyindex_lowres'), for frames of imagery coarser than the maps (Localizer._lowres_look)
    localdesc.onnx  optional: the learned local descriptor (localdesc.py) both keypoint stores were built with
                    (manifest 'local_descriptor'; keystore meta 'descriptor'); frames are described with it.
                    Stores built with RootSIFT need none
    keyindex.graph  optional: hnswlib graph (l2) over the keystore's descriptors, label = keypoint row, for
                    keypoint voting (vote.py), kept without its vectors (the keystore's descriptors, decoded,
                    put back at load) and zlib-compressed (hnsw_file.py); manifest 'keyindex' holds its
                    parameters, dim and count. Bundles built before session 51 hold the whole hnswlib file as
                    keyindex.hnsw, still read. Bundles without either load with ``keyindex`` None (voting off)

Loading checks every file against the manifest (size, then SHA-256) and the encoder against the one the
bundle was built with; any mismatch raises ``BundleError`` with a one-line reason. Arrays are read from
the verified bytes with ``allow_pickle=False``; nothing is ever unpickled or evaluated.

The manifest itself is covered by ``manifest.sha256`` (``sha256sum`` format, written by ``seal_manifest``):
when that file is present, a manifest whose bytes do not match it is refused, so that no altered number in
it (an index parameter, a scale) can be used. A bundle without it (built before sealing) is still loaded:
its manifest is then only checked for structure. Files in the directory that the manifest does not list
are never read; they are ignored (and named in ``Bundle.unlisted``), not refused.
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
KEYINDEX_GRAPH = "keyindex.graph"    # the key index without its vectors, compressed (hnsw_file.py)
KEYSTORE_LOWRES = "keystore_lowres.npz"
KEYINDEX_LOWRES_GRAPH = "keyindex_lowres.graph"
MANIFEST_SEAL = "manifest.sha256"      # "<sha256 of manifest.yaml>  manifest.yaml\n" (sha256sum -c format)
_HEX = set("0123456789abcdef")


class BundleError(RuntimeError):
    """A bundle that must not be used; the message is one line."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _is_sha(x) -> bool:
    return isinstance(x, str) and len(x) == 64 and set(x) <= _HEX


def seal_manifest(bundle_dir) -> str:
    """Write ``manifest.sha256`` for the bundle's current manifest.yaml; returns the digest. Call it last
    when building a bundle (after the manifest is written)."""
    d = Path(bundle_dir)
    digest = hashlib.sha256((d / MANIFEST).read_bytes()).hexdigest()
    (d / MANIFEST_SEAL).write_text(f"{digest}  {MANIFEST}\n")
    return digest


def _manifest_bytes(bundle_dir: Path) -> tuple[bytes, bool]:
    """manifest.yaml's bytes, checked against manifest.sha256 when the bundle is sealed."""
    path = Path(bundle_dir) / MANIFEST
    if not path.is_file():
        raise BundleError(f"bundle {bundle_dir}: no {MANIFEST}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BundleError(f"bundle {bundle_dir}: {MANIFEST} cannot be read ({exc.strerror})") from None
    seal_path = Path(bundle_dir) / MANIFEST_SEAL
    if not seal_path.exists():
        return data, False
    try:
        seal = seal_path.read_bytes()
    except OSError as exc:
        raise BundleError(f"bundle {bundle_dir}: {MANIFEST_SEAL} cannot be read ({exc.strerror})") from None
    expected = f"  {MANIFEST}\n".encode()
    if len(seal) != 64 + len(expected) or not seal.endswith(expected) or not _is_sha(seal[:64].decode("latin-1")):
        raise BundleError(f"bundle {bundle_dir}: {MANIFEST_SEAL} is malformed (corrupted or altered)")
    if hashlib.sha256(data).hexdigest() != seal[:64].decode():
        raise BundleError(f"bundle {bundle_dir}: {MANIFEST} fails its SHA-256 check against {MANIFEST_SEAL} "
                          f"(corrupted or altered)")
    return data, True


def _check_manifest(bundle_dir, m: dict) -> None:
    """Structure and types of every manifest field that loading uses: BundleError naming the field."""
    def bad(what):
        raise BundleError(f"bundle {bundle_dir}: {MANIFEST} field {what} is missing or malformed")

    def mapping(key):
        if not isinstance(m.get(key), dict):
            bad(f"'{key}'")
        return m[key]

    def integer(x) -> bool:
        return isinstance(x, int) and not isinstance(x, bool)

    files = mapping("files")
    for name, entry in files.items():
        if (not isinstance(name, str) or not name or name in (".", "..", MANIFEST, MANIFEST_SEAL)
                or "/" in name or "\\" in name or "\0" in name):
            bad(f"'files' (file name {str(name)[:40]!r})")
        if not isinstance(entry, dict) or not _is_sha(entry.get("sha256")):
            bad(f"'files.{name}.sha256'")
        if "bytes" in entry and not (integer(entry["bytes"]) and entry["bytes"] >= 0):
            bad(f"'files.{name}.bytes'")
    enc = mapping("encoder")
    if not _is_sha(enc.get("sha256")):
        bad("'encoder.sha256'")
    index = mapping("index")
    if not (integer(index.get("dim")) and 1 <= index["dim"] <= 65536):
        bad("'index.dim'")
    if index.get("space", "ip") not in ("ip", "cosine", "l2"):
        bad("'index.space'")
    if not (integer(index.get("ef", 64)) and 1 <= index.get("ef", 64) <= 100000):
        bad("'index.ef'")
    if index.get("turns", 1) not in (1, 2, 4):
        bad("'index.turns'")
    counts = mapping("counts")
    if not (integer(counts.get("views")) and counts["views"] >= 1):
        bad("'counts.views'")
    scales = mapping("grid").get("scales_km")
    if (not isinstance(scales, list) or not scales
            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and 0 < x < 1e5 for x in scales)):
        bad("'grid.scales_km'")
    if "keyindex" in m:
        ki = mapping("keyindex")
        if not (integer(ki.get("dim")) and 1 <= ki["dim"] <= 4096):
            bad("'keyindex.dim'")
        if not (integer(ki.get("count")) and ki["count"] >= 1):
            bad("'keyindex.count'")
        if ki.get("space", "l2") not in ("l2", "ip"):
            bad("'keyindex.space'")
        if not (integer(ki.get("ef", 12)) and 1 <= ki.get("ef", 12) <= 100000):
            bad("'keyindex.ef'")
        if "store_desc_sha256" in ki and not _is_sha(ki["store_desc_sha256"]):
            bad("'keyindex.store_desc_sha256'")


def read_manifest(bundle_dir: Path) -> dict:
    m, _ = _read_manifest(bundle_dir)
    return m


def _read_manifest(bundle_dir: Path) -> tuple[dict, bool]:
    data, sealed = _manifest_bytes(bundle_dir)
    try:
        m = yaml.safe_load(data.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise BundleError(f"bundle {bundle_dir}: {MANIFEST} is not valid YAML ({type(exc).__name__})") from None
    except RecursionError:
        raise BundleError(f"bundle {bundle_dir}: {MANIFEST} is not valid YAML (nested too deeply)") from None
    if not isinstance(m, dict) or "files" not in m or "format_version" not in m:
        raise BundleError(f"bundle {bundle_dir}: {MANIFEST} lacks 'files' or 'format_version'")
    if m["format_version"] != FORMAT_VERSION:
        raise BundleError(f"bundle {bundle_dir}: format_version {str(m['format_version'])[:20]!r}, "
                          f"this build reads {FORMAT_VERSION}")
    _check_manifest(bundle_dir, m)
    return m, sealed


ENCODER_RECORD = "encoder.json"        # written by ``earthfix export`` next to the models: files -> sha256, bytes


def check_encoder_record(encoder_path) -> bool:
    """Check an encoder file against the export record next to it (``encoder.json``), when there is one:
    BundleError if the record lists the file with another SHA-256 (a corrupted model must be refused before
    a default bundle is rebuilt from it). Returns True when a record was checked."""
    path = Path(encoder_path)
    rec_path = path.parent / ENCODER_RECORD
    if not rec_path.is_file():
        return False
    try:
        import json
        entry = json.loads(rec_path.read_text()).get("files", {}).get(path.name)
    except (OSError, ValueError, AttributeError):
        raise BundleError(f"{rec_path} is unreadable (corrupted?): cannot vouch for {path.name}") from None
    if not isinstance(entry, dict) or "sha256" not in entry:
        return False
    try:
        sha = sha256_file(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"encoder not found: {path}") from None
    if sha != entry["sha256"]:
        raise BundleError(f"encoder {path} fails its SHA-256 check against {rec_path} (corrupted or altered)")
    return True


def check_encoder(bundle_dir, encoder_path) -> str:
    """Refuse, before the encoder is parsed by anything, an encoder file whose SHA-256 is not the one the
    bundle was built with (a corrupted or a different model). Returns the SHA-256."""
    bundle_dir = Path(bundle_dir)
    if not bundle_dir.is_dir():
        raise BundleError(f"bundle directory not found: {bundle_dir}")
    m = read_manifest(bundle_dir)
    try:
        sha = sha256_file(Path(encoder_path))
    except FileNotFoundError:
        raise FileNotFoundError(f"encoder not found: {encoder_path}") from None
    except OSError as exc:
        raise BundleError(f"encoder {encoder_path} cannot be read ({exc.strerror})") from None
    if sha != m["encoder"]["sha256"]:
        raise BundleError(f"bundle {bundle_dir} was built with encoder {m['encoder']['sha256'][:12]}..., not "
                          f"{encoder_path} ({sha[:12]}...): a different or corrupted encoder")
    return sha


def verified_bytes(bundle_dir: Path, name: str, manifest: dict) -> bytes:
    entry = manifest["files"].get(name)
    if not isinstance(entry, dict) or "sha256" not in entry:
        raise BundleError(f"bundle {bundle_dir}: {name} is not listed in the manifest")
    path = Path(bundle_dir) / name
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BundleError(f"bundle {bundle_dir}: {name} is missing") from None
    except OSError as exc:
        raise BundleError(f"bundle {bundle_dir}: {name} cannot be read ({exc.strerror})") from None
    if "bytes" in entry and len(data) != entry["bytes"]:
        raise BundleError(f"bundle {bundle_dir}: {name} has {len(data)} bytes, manifest says {entry['bytes']} (truncated or altered)")
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise BundleError(f"bundle {bundle_dir}: {name} fails its SHA-256 check (corrupted or altered)")
    return data


def load_npz(data: bytes) -> dict:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _attach_describer(bundle_dir, store, blobs: dict, manifest: dict, threads: int, cache: dict,
                      providers=None) -> None:
    """Give a keypoint store built with the learned local descriptor the bundle's copy of that network
    (the same SHA-256 in the store, the manifest and the file, or the bundle is refused)."""
    d = store.descriptor
    if d["kind"] == "rootsift":
        return
    if d["kind"] != "patchnet":
        raise BundleError(f"bundle {bundle_dir}: keypoint store descriptor {d['kind']!r} is unknown")
    from .localdesc import BUNDLE_FILE
    rec = manifest.get("local_descriptor") or {}
    name = rec.get("file", BUNDLE_FILE)
    if name not in blobs:
        raise BundleError(f"bundle {bundle_dir}: the keypoint store needs its local descriptor, but the manifest "
                          f"lists no {name}")
    if rec.get("sha256") != d.get("sha256"):
        raise BundleError(f"bundle {bundle_dir}: the keypoint store was built with another local descriptor "
                          f"than the manifest's {name}")
    from .keystore import KeystoreError
    from .localdesc import LocalDescError, PatchDescriber
    try:
        if name not in cache:
            cache[name] = PatchDescriber(blobs[name], threads=threads, providers=providers, name=name)
        store.attach_describer(cache[name])
    except (LocalDescError, KeystoreError) as exc:
        raise BundleError(f"bundle {bundle_dir}: {exc}") from None


def _load_keyindex(bundle_dir, blob: bytes, meta, keystore, threads: int, graph_only: bool = False):
    """The voting index from verified bytes, cross-checked against its store before native code reads it.
    ``graph_only``: ``blob`` is ``keyindex.graph`` (hnsw_file.pack_graph), its vectors the store's."""
    import hnswlib
    if not isinstance(meta, dict):
        raise BundleError(f"bundle {bundle_dir}: a key index is listed but the manifest holds no record of it")
    if meta["dim"] != keystore.dim or meta["count"] != len(keystore):
        raise BundleError(f"bundle {bundle_dir}: keyindex ({meta['count']} x {meta['dim']}) disagrees with the "
                          f"keystore ({len(keystore)} x {keystore.dim})")
    if "store_desc_sha256" in meta and \
            hashlib.sha256(np.ascontiguousarray(keystore.desc)).hexdigest() != meta["store_desc_sha256"]:
        raise BundleError(f"bundle {bundle_dir}: keyindex was built from another keystore (descriptor SHA-256)")
    from .hnsw_file import HnswFileError, decompress_graph, write_restored
    index = hnswlib.Index(space=meta.get("space", "l2"), dim=int(meta["dim"]))
    tmp = tempfile.NamedTemporaryFile(suffix=".hnsw", delete=False)   # hnswlib reads only paths
    try:                  # the temporary file goes whatever fails: writing it, or hnswlib reading it
        with tmp:
            if graph_only:
                # the vectors go back a block at a time, straight into the file: the restored file (32 MB
                # for the default bundle) and the decoded store (17 MB) are never whole in memory
                write_restored(decompress_graph(blob), keystore.decode, keystore.dim, len(keystore), tmp)
            else:
                tmp.write(blob)
        index.load_index(tmp.name, max_elements=int(meta["count"]))
    except HnswFileError as exc:
        raise BundleError(f"bundle {bundle_dir}: {KEYINDEX_GRAPH}: {exc}") from None
    finally:
        os.unlink(tmp.name)
    if index.get_current_count() != len(keystore):
        raise BundleError(f"bundle {bundle_dir}: keyindex holds {index.get_current_count()} items, "
                          f"the keystore {len(keystore)}")
    index.set_ef(int(meta.get("ef", 12)))
    index.set_num_threads(int(threads))
    return index


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
    sealed: bool = False               # manifest.yaml verified against manifest.sha256
    unlisted: tuple = ()               # files in the directory that the manifest does not list (ignored)
    keyindex: object | None = None     # hnswlib.Index over keystore descriptors (vote.py); None if absent
    keystore_fine: object | None = None  # the finer KeypointStore of keystore_fine.npz; None if absent
    keystore_lowres: object | None = None  # the low-resolution KeypointStore (keystore_lowres.npz); None if absent
    keyindex_lowres: object | None = None  # its voting index (keyindex_lowres.graph)

    @classmethod
    def load(cls, bundle_dir, encoder_sha256: str | None = None, threads: int = 1,
             load_keystore: bool = True, load_descriptors: bool = False, providers=None,
             load_fine: bool = True, load_lowres: bool = True, load_keyindex: bool = True) -> "Bundle":
        """The bundle in ``bundle_dir``, every listed file checked against the manifest's SHA-256 first (a
        bundle is used whole or not at all). ``load_keystore``, ``load_fine``, ``load_lowres`` and
        ``load_keyindex`` say which of its optional parts are read into memory (the keypoint store; the
        finer and the low-resolution stores; the voting indexes): a configuration that never uses one
        (``fine_store``, ``lowres_store``, ``vote`` false) need not hold it. The low-resolution store is
        reached only through its vote, so it needs ``load_keyindex`` too. Raises ``BundleError``."""
        import hnswlib
        bundle_dir = Path(bundle_dir)
        if not bundle_dir.is_dir():
            raise BundleError(f"bundle directory not found: {bundle_dir}")
        m, sealed = _read_manifest(bundle_dir)
        enc = m["encoder"]["sha256"]
        if encoder_sha256 is not None and enc != encoder_sha256:
            raise BundleError(f"bundle {bundle_dir} was built with encoder {str(enc)[:12]}..., "
                              f"not the loaded encoder {encoder_sha256[:12]}...")
        # verify every file first: a bundle is used whole or not at all
        blobs = {name: verified_bytes(bundle_dir, name, m) for name in m["files"]}
        for needed in ("views.npz", "pca.npz", "index.hnsw"):
            if needed not in blobs:
                raise BundleError(f"bundle {bundle_dir}: manifest lists no {needed}")
        n = int(m["counts"]["views"])
        turns = int(m["index"].get("turns", 1))
        scales_km = tuple(float(s) for s in m["grid"]["scales_km"])
        try:
            views = load_npz(blobs["views.npz"])
            pca = load_npz(blobs["pca.npz"])
            dim = int(m["index"]["dim"])
            # cross-checks before any native code trusts these numbers
            if pca["components"].ndim != 2 or pca["components"].shape[1] != dim \
                    or pca["mean"].shape != (pca["components"].shape[0],):
                raise BundleError(f"bundle {bundle_dir}: PCA shape disagrees with the index dimension {dim}")
            if not (len(views["lat"]) == len(views["lon"]) == len(views["scale"]) == n):
                raise BundleError(f"bundle {bundle_dir}: view count disagrees with the manifest")
            if n and (views["scale"].min() < 0 or views["scale"].max() >= len(scales_km)):
                raise BundleError(f"bundle {bundle_dir}: view scales outside grid.scales_km")
            index = hnswlib.Index(space=m["index"].get("space", "ip"), dim=dim)
            # hnswlib reads only from a path: load a private copy of the verified bytes
            with tempfile.NamedTemporaryFile(suffix=".hnsw", delete=False) as tmp:
                tmp.write(blobs["index.hnsw"])
            try:
                index.load_index(tmp.name, max_elements=n * turns)
            finally:
                os.unlink(tmp.name)
            index.set_ef(int(m["index"].get("ef", 64)))
            index.set_num_threads(int(threads))
            keystore = None
            if load_keystore and "keystore.npz" in blobs:
                from .keystore import KeypointStore
                keystore = KeypointStore.from_bytes(blobs["keystore.npz"])
            keystore_fine = None
            if keystore is not None and load_fine and "keystore_fine.npz" in blobs:
                keystore_fine = KeypointStore.from_bytes(blobs["keystore_fine.npz"])
                if not keystore_fine.gsd_km < keystore.gsd_km:
                    raise BundleError(f"bundle {bundle_dir}: keystore_fine.npz ({keystore_fine.gsd_km:g} km/px) "
                                      f"is not finer than keystore.npz ({keystore.gsd_km:g} km/px)")
            keystore_lowres = keyindex_lowres = None
            if keystore is not None and (KEYSTORE_LOWRES in blobs) != (KEYINDEX_LOWRES_GRAPH in blobs):
                raise BundleError(f"bundle {bundle_dir}: {KEYSTORE_LOWRES} and {KEYINDEX_LOWRES_GRAPH} come "
                                  f"together, the manifest lists one")
            if keystore is not None and load_lowres and load_keyindex and KEYSTORE_LOWRES in blobs:
                keystore_lowres = KeypointStore.from_bytes(blobs[KEYSTORE_LOWRES])
            describers: dict = {}       # one network for every store
            for store in (keystore, keystore_fine, keystore_lowres):
                if store is not None:
                    _attach_describer(bundle_dir, store, blobs, m, threads, describers, providers)
            keyindex = None
            if keystore is not None and load_keyindex:
                if KEYINDEX_GRAPH in blobs:
                    keyindex = _load_keyindex(bundle_dir, blobs[KEYINDEX_GRAPH], m.get("keyindex"), keystore,
                                              threads, graph_only=True)
                elif "keyindex.hnsw" in blobs:
                    keyindex = _load_keyindex(bundle_dir, blobs["keyindex.hnsw"], m.get("keyindex"), keystore,
                                              threads)
            if keystore_lowres is not None:
                keyindex_lowres = _load_keyindex(bundle_dir, blobs[KEYINDEX_LOWRES_GRAPH], m.get("keyindex_lowres"),
                                                 keystore_lowres, threads, graph_only=True)
            desc = None
            if load_descriptors and "descriptors.npy" in blobs:
                desc = np.load(io.BytesIO(blobs["descriptors.npy"]), allow_pickle=False)
                if desc.shape != (n * turns, dim):
                    raise BundleError(f"bundle {bundle_dir}: descriptors.npy shape disagrees with the manifest")
        except BundleError:
            raise
        except Exception as exc:  # malformed but correctly summed content: still refuse cleanly
            raise BundleError(f"bundle {bundle_dir}: unreadable content ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
        if len(views["lat"]) != n or index.get_current_count() != n * turns:
            raise BundleError(f"bundle {bundle_dir}: view count disagrees with the manifest")
        known = set(m["files"]) | {MANIFEST, MANIFEST_SEAL}
        unlisted = tuple(sorted(p.name for p in bundle_dir.iterdir() if p.name not in known))
        return cls(bundle_dir, m, views["lat"].astype(np.float64), views["lon"].astype(np.float64),
                   views["scale"].astype(np.int64), pca["mean"].astype(np.float32),
                   pca["components"].astype(np.float32), index, keystore, desc, scales_km,
                   sealed, unlisted, keyindex, keystore_fine, keystore_lowres, keyindex_lowres)

    @property
    def views(self) -> int:
        return len(self.lat)

    @property
    def bytes(self) -> int:
        return sum(int(e["bytes"]) for e in self.manifest["files"].values()) + (self.path / MANIFEST).stat().st_size

    @property
    def turns(self) -> int:
        """Stored turns of every reference view (index rows per view)."""
        return int(self.manifest["index"].get("turns", 1))

    def reduce(self, desc: np.ndarray) -> np.ndarray:
        """Encoder descriptors (N, D) -> index space (N, d), L2-normalised."""
        return reduce_descriptors(desc, self.pca_mean, self.pca_components)

    def search(self, desc: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k views for one descriptor: (view indices, cosine similarities), best first."""
        t = self.turns
        labels, dist = self.index.knn_query(self.reduce(desc), k=min(k * t, self.views * t))
        return first_views(labels[0], 1.0 - dist[0], t, k)


def reduce_descriptors(desc: np.ndarray, mean: np.ndarray, components: np.ndarray) -> np.ndarray:
    """Descriptors (N, D) -> the index space (N, d) of a PCA (``mean`` (D,), ``components`` (D, d), whitening
    folded in), L2-normalised, float32: one function for the bundle's build, its search and the benches."""
    z = (np.atleast_2d(desc) - mean) @ components
    return (z / (np.linalg.norm(z, axis=1, keepdims=True) + 1e-12)).astype(np.float32)


def first_views(rows, sims, turns: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Index rows (best first) -> the first ``k`` distinct views (row // turns) and their best similarity."""
    rows = np.asarray(rows, np.int64)
    if turns <= 1:   # one row per view: already distinct
        return rows[:k], np.asarray(sims, np.float32)[:k]
    views = rows // turns
    _, first = np.unique(views, return_index=True)
    keep = np.sort(first)[:k]
    return views[keep], np.asarray(sims, np.float32)[keep]
