"""Data at rest: a bundle or an encoder that is not byte-for-byte what was built is refused, never used.

CONVENTIONS: "A bundle whose files do not match the SHA-256 sums in its manifest, or whose encoder differs
from the one it was built with, is refused at load with a one-line reason and a non-zero exit; locate never
runs on it." Checked here for one flipped byte in each file (manifest.yaml included), truncated, missing
and extra files, a bundle built with another encoder, a flipped encoder, and ``--fallback-bundle``.
Policy for files the manifest does not list: ignored (never read), named on stderr by locate.
Also: no unpickling, eval or unsafe YAML anywhere in earthfix/.

Needs the shipped encoder (models/encoder_int8.onnx) or ``EARTHFIX_TEST_MODELS=DIR``; skipped otherwise.
"""
from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from earthfix.onboard.bundle import MANIFEST, MANIFEST_SEAL, Bundle, BundleError, check_encoder, seal_manifest

from support import ENCODER, REPO, localizer_config, needs_model


# ---- set-up ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sealed(tiny_bundle, tmp_path_factory):
    """The built bundle with its manifest sealed (manifest.sha256), whether or not the builder sealed it."""
    d = tmp_path_factory.mktemp("sealed") / "bundle"
    shutil.copytree(tiny_bundle, d)
    if not (d / MANIFEST_SEAL).exists():
        seal_manifest(d)
    return d


@pytest.fixture(scope="module")
def unsealed(tiny_bundle, tmp_path_factory):
    """The built bundle without manifest.sha256 (as bundles built before sealing are)."""
    d = tmp_path_factory.mktemp("unsealed") / "bundle"
    shutil.copytree(tiny_bundle, d)
    (d / MANIFEST_SEAL).unlink(missing_ok=True)
    return d


@pytest.fixture(scope="module")
def env(tmp_path_factory, cam256_path, basemap, cam256):
    """A config YAML pointing at the test encoder, and two good frames of the bundle's region."""
    import cv2
    from earthfix.sim.scenario import single_frame
    d = tmp_path_factory.mktemp("env")
    (d / "cfg.yaml").write_text(yaml.safe_dump(localizer_config()))
    frames = []
    for i, (lat, lon) in enumerate(((35.0, -110.0), (33.0, -105.0))):
        img, _ = single_frame(basemap, cam256, lat, lon, 500.0, 30.0)
        cv2.imwrite(str(d / f"good{i}.png"), img)
        frames.append(str(d / f"good{i}.png"))
    return {"config": str(d / "cfg.yaml"), "camera": str(cam256_path), "frames": frames, "dir": d}


def copy_of(src: Path, tmp_path: Path, name="b") -> Path:
    d = tmp_path / name
    shutil.copytree(src, d)
    return d


def flip(path: Path, offset: int | None = None, mask: int = 0x01) -> int:
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset % len(data)
    data[i] ^= mask
    path.write_bytes(bytes(data))
    return i


def run_cli(argv, capfd):
    from earthfix.cli import main
    rc = main(argv)
    out, err = capfd.readouterr()
    return rc, out, err


def assert_refused(rc, out, err, *words):
    """Non-zero exit, nothing on stdout (nothing located), one line on stderr naming the problem."""
    assert rc != 0
    assert out == "", out[:300]
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], (w, lines[0])


def locate(bundle, env, capfd, *extra, frames=None):
    return run_cli(["locate", "--camera", env["camera"], "--config", env["config"], "--bundle", str(bundle),
                    *extra, *(frames or env["frames"])], capfd)


def info(bundle, capfd, encoder=None):
    return run_cli(["info", "--bundle", str(bundle), "--encoder", str(encoder or ENCODER), "--json"], capfd)


def json_lines(out: str) -> list[dict]:
    def no_const(c):
        raise ValueError(f"non-standard JSON constant {c}")
    return [json.loads(ln, parse_constant=no_const) for ln in out.splitlines()]


# ---- the good bundle ---------------------------------------------------------------------------------

@needs_model
def test_good_bundle_loads_and_locates(sealed, env, capfd):
    b = Bundle.load(sealed)
    assert b.sealed and b.unlisted == () and b.views > 10
    rc, out, err = locate(sealed, env, capfd)
    assert rc == 0 and "Traceback" not in err
    lines = json_lines(out)
    assert [ln["frame"] for ln in lines] == env["frames"]
    assert all("error" not in ln and ln["candidates"] for ln in lines)
    rc, out, err = info(sealed, capfd)
    assert rc == 0 and json.loads(out)["views"] == b.views


@needs_model
def test_builder_seals_the_manifest(tiny_bundle):
    assert (tiny_bundle / MANIFEST_SEAL).is_file()
    assert Bundle.load(tiny_bundle).sealed


# ---- one flipped byte in each file -------------------------------------------------------------------

def manifest_files(bundle: Path) -> list[str]:
    return sorted(yaml.safe_load((bundle / MANIFEST).read_text())["files"])


@needs_model
def test_a_flipped_byte_in_each_file_is_refused(sealed, env, tmp_path, capfd):
    names = manifest_files(sealed) + [MANIFEST, MANIFEST_SEAL]
    assert {"views.npz", "pca.npz", "index.hnsw", "keystore.npz", "descriptors.npy"} <= set(names)
    for k, name in enumerate(names):
        d = copy_of(sealed, tmp_path, f"flip{k}")
        flip(d / name)
        with pytest.raises(BundleError) as e:
            Bundle.load(d)
        msg = str(e.value)
        assert "\n" not in msg and (name in msg or MANIFEST in msg), msg
        assert_refused(*locate(d, env, capfd), str(d))
        assert_refused(*info(d, capfd), str(d))


@needs_model
def test_flips_all_over_a_sealed_manifest_are_refused(sealed, tmp_path):
    """Every line of the manifest (numbers, keys, sums, the format version), one flipped bit each."""
    d = copy_of(sealed, tmp_path)
    clean = (d / MANIFEST).read_bytes()
    starts = [0] + [i + 1 for i, c in enumerate(clean) if c == ord("\n")][:-1]
    for line, i in enumerate(starts):
        j = min(i + 4 + line % 7, len(clean) - 1)           # a few characters into each line
        (d / MANIFEST).write_bytes(clean[:j] + bytes([clean[j] ^ 0x01]) + clean[j + 1:])
        with pytest.raises(BundleError):
            Bundle.load(d)
    (d / MANIFEST).write_bytes(clean)
    Bundle.load(d)


@needs_model
def test_flips_in_an_unsealed_manifest_never_run_on_unverified_data(unsealed, tmp_path):
    """Without manifest.sha256 a flip in a plain number (say index.ef) cannot be detected; but no flip may
    crash the loader, and every flip in a file's or the encoder's sum, size or name is refused."""
    d = copy_of(unsealed, tmp_path)
    clean = (d / MANIFEST).read_bytes()
    text = clean.decode()
    import re
    basemap = (text.index("\nbasemap:"), text.index("\ngrid:"))          # the basemap's sum is information only
    sums = [m.span() for m in re.finditer(r"[0-9a-f]{64}", text) if not basemap[0] < m.start() < basemap[1]]
    names = [m.span() for m in re.finditer(r"(views|pca|keystore)\.npz|index\.hnsw|descriptors\.npy", text)]
    from earthfix.onboard.bundle import sha256_file
    enc_sha = sha256_file(ENCODER)
    refused = loaded = 0
    for j in range(0, len(clean), 3):
        for mask in (0x01, 0x20):
            (d / MANIFEST).write_bytes(clean[:j] + bytes([clean[j] ^ mask]) + clean[j + 1:])
            try:
                b = Bundle.load(d, encoder_sha256=enc_sha)
            except BundleError as exc:
                assert "\n" not in str(exc)
                refused += 1
                continue
            loaded += 1
            # what loaded is only ever data whose sums the (altered) manifest holds and the files match
            assert not any(a <= j < b for a, b in sums), ("a flipped sum was accepted", j)
            assert not any(a <= j < b for a, b in names), ("a renamed file was accepted", j)
            for name, entry in b.manifest["files"].items():
                assert sha256_file(d / name) == entry["sha256"]
    assert refused > loaded > 0


# ---- truncated, missing, extra files -----------------------------------------------------------------

@needs_model
def test_truncated_and_missing_files_are_refused(sealed, env, tmp_path, capfd):
    for k, name in enumerate(manifest_files(sealed)):
        d = copy_of(sealed, tmp_path, f"t{k}")
        data = (d / name).read_bytes()
        (d / name).write_bytes(data[:-1])
        with pytest.raises(BundleError, match="truncated"):
            Bundle.load(d)
        assert_refused(*locate(d, env, capfd), name)
        (d / name).unlink()
        with pytest.raises(BundleError, match="missing"):
            Bundle.load(d)
        assert_refused(*info(d, capfd), name)
    d = copy_of(sealed, tmp_path, "nomanifest")
    (d / MANIFEST).unlink()
    assert_refused(*locate(d, env, capfd), MANIFEST)
    assert_refused(*locate(tmp_path / "nowhere", env, capfd), "not found")


@needs_model
def test_extra_unlisted_files_are_ignored_and_named(sealed, env, tmp_path, capfd):
    d = copy_of(sealed, tmp_path)
    (d / "index.hnsw.old").write_bytes(b"\0" * 100)
    (d / "notes.txt").write_text("uplinked 2026-11-21\n")
    b = Bundle.load(d)
    assert b.unlisted == ("index.hnsw.old", "notes.txt")
    rc, out, err = locate(d, env, capfd)
    assert rc == 0 and len(json_lines(out)) == len(env["frames"])
    assert "index.hnsw.old" in err and "ignoring" in err and "Traceback" not in err


@needs_model
def test_manifest_naming_files_outside_the_bundle_is_refused(unsealed, tmp_path):
    d = copy_of(unsealed, tmp_path)
    m = yaml.safe_load((d / MANIFEST).read_text())
    m["files"]["../outside.npz"] = dict(m["files"]["views.npz"])
    (d / MANIFEST).write_text(yaml.safe_dump(m, sort_keys=False))
    with pytest.raises(BundleError, match="file name"):
        Bundle.load(d)


# ---- another encoder, a flipped encoder, the fallback ----------------------------------------------------

@pytest.fixture(scope="module")
def other_encoder(tmp_path_factory):
    """The same network saved again with another doc string: a different file, so a different encoder."""
    import onnx
    if not ENCODER.is_file():
        pytest.skip(f"no encoder at {ENCODER}")
    model = onnx.load(str(ENCODER))
    model.doc_string = (model.doc_string or "") + " (re-exported)"
    out = tmp_path_factory.mktemp("other") / "encoder_int8.onnx"
    onnx.save(model, str(out))
    assert out.read_bytes() != ENCODER.read_bytes()
    return out


@needs_model
def test_bundle_built_with_another_encoder_is_refused_and_fallback_works(sealed, other_encoder, env, tmp_path,
                                                                         capfd):
    from earthfix.tools.build_index import build_bundle
    other = build_bundle(tmp_path / "other", encoder_path=other_encoder, region=(34.0, 37.0, -112.0, -107.0),
                         keystore=False, progress=False, threads=1, log=lambda s: None)
    assert_refused(*locate(other, env, capfd), "encoder")
    assert_refused(*info(other, capfd), "encoder")
    with pytest.raises(BundleError, match="encoder"):
        check_encoder(other, ENCODER)
    rc, out, err = locate(other, env, capfd, "--fallback-bundle", str(sealed))
    assert rc == 0
    lines = json_lines(out)
    assert [ln["frame"] for ln in lines] == env["frames"] and all("error" not in ln for ln in lines)
    assert "WARNING" in err and "FALLBACK" in err and str(sealed) in err and "encoder" in err
    assert "Traceback" not in err


@needs_model
def test_fallback_on_a_corrupted_bundle_and_both_bad(sealed, env, tmp_path, capfd):
    bad = copy_of(sealed, tmp_path, "bad")
    flip(bad / "index.hnsw")
    rc, out, err = locate(bad, env, capfd, "--fallback-bundle", str(sealed))
    assert rc == 0 and len(json_lines(out)) == len(env["frames"])
    assert "BUNDLE REFUSED" in err and "index.hnsw" in err and "FALLBACK" in err
    bad2 = copy_of(sealed, tmp_path, "bad2")
    flip(bad2 / "views.npz")
    rc, out, err = locate(bad, env, capfd, "--fallback-bundle", str(bad2))
    assert rc != 0 and out == "" and "fallback bundle refused too" in err and "Traceback" not in err


@needs_model
def test_a_flipped_encoder_is_refused_before_it_is_parsed(sealed, env, tmp_path, capfd):
    n = ENCODER.stat().st_size
    for k, offset in enumerate((1, 50, n // 2, n - 1)):      # protobuf framing (parser errors) and weights
        enc = tmp_path / f"enc{k}.onnx"
        shutil.copyfile(ENCODER, enc)
        flip(enc, offset, 0xFF)
        cfg = tmp_path / f"cfg{k}.yaml"
        cfg.write_text(yaml.safe_dump(dict(localizer_config(), encoder=str(enc))))
        rc, out, err = run_cli(["locate", "--camera", env["camera"], "--config", str(cfg), "--bundle", str(sealed),
                                *env["frames"]], capfd)
        assert_refused(rc, out, err, "encoder")
        assert_refused(*info(sealed, capfd, encoder=enc), "encoder")


@needs_model
def test_encoder_export_record_catches_a_flipped_model(sealed, env, tmp_path, capfd):
    """A model directory carries encoder.json (earthfix export): a flipped model is refused against it before
    anything else, so a default bundle is never rebuilt from a corrupted shipped encoder."""
    from earthfix.onboard.bundle import check_encoder_record, sha256_file
    models = tmp_path / "models"
    models.mkdir()
    enc = models / "encoder_int8.onnx"
    shutil.copyfile(ENCODER, enc)
    (models / "encoder.json").write_text(json.dumps({"files": {enc.name: {"sha256": sha256_file(enc)}}}))
    assert check_encoder_record(enc) is True
    assert check_encoder_record(tmp_path / "elsewhere.onnx") is False          # no record there: nothing to say
    flip(enc, enc.stat().st_size // 3, 0x10)
    with pytest.raises(BundleError, match="encoder.json"):
        check_encoder_record(enc)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(dict(localizer_config(), encoder=str(enc))))
    rc, out, err = run_cli(["locate", "--camera", env["camera"], "--config", str(cfg), "--bundle", str(sealed),
                            *env["frames"]], capfd)
    assert_refused(rc, out, err, "encoder.json")
    (models / "encoder.json").write_text("{not json")
    with pytest.raises(BundleError, match="unreadable"):
        check_encoder_record(enc)


@needs_model
def test_a_default_bundle_is_never_rebuilt_from_a_corrupted_shipped_encoder(tmp_path, monkeypatch, capfd):
    """info / replay / eval / soak build the default bundle on first use: from a shipped encoder that fails
    its export record they refuse with one line and exit 2, and build nothing."""
    from earthfix.onboard.bundle import sha256_file
    from earthfix.tools import build_index
    models = tmp_path / "models"
    models.mkdir()
    enc = models / "encoder_int8.onnx"
    shutil.copyfile(ENCODER, enc)
    (models / "encoder.json").write_text(json.dumps({"files": {enc.name: {"sha256": sha256_file(enc)}}}))
    flip(enc, enc.stat().st_size // 3, 0x10)
    built = []
    monkeypatch.setenv("EARTHFIX_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(build_index, "models_dir", lambda: models)
    monkeypatch.setattr(build_index, "build_bundle", lambda out, **kw: built.append(out) or out)
    with pytest.raises(BundleError, match="encoder.json"):
        build_index.ensure_default_bundle(progress=False)
    assert built == []
    rc, out, err = run_cli(["info"], capfd)
    assert rc == 2 and built == []
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err and lines[-1].startswith("earthfix info:") and "encoder.json" in lines[-1], err


def test_any_command_ends_a_project_error_with_one_line_and_exit_2(tmp_path, capfd):
    """A BundleError (CameraError, ConfigError, ...) that a command does not catch itself is one line and exit 2
    from the console command; any other exception is a bug and keeps its traceback."""
    from earthfix.cli import _is_input_error
    rc, out, err = run_cli(["index-bench", "--bundle", str(tmp_path / "no_such_bundle")], capfd)
    assert_refused(rc, out, err, "earthfix index-bench:", "no_such_bundle")
    assert rc == 2
    assert _is_input_error(BundleError("x")) and _is_input_error(FileNotFoundError("x"))
    assert not _is_input_error(ZeroDivisionError()) and not _is_input_error(KeyError("x"))


@needs_model
def test_info_reads_an_unsealed_manifest_without_its_descriptive_fields(unsealed, tmp_path, capfd):
    """Fields the loader does not need (basemap, grid, counts) may be missing from an old or edited unsealed
    manifest: info shows them as null instead of a KeyError traceback."""
    b = copy_of(unsealed, tmp_path)
    m = yaml.safe_load((b / MANIFEST).read_text())
    m.pop("basemap")
    m["counts"].pop("views_per_scale")
    (b / MANIFEST).write_text(yaml.safe_dump(m, sort_keys=False))
    rc, out, err = info(b, capfd)
    assert rc == 0 and "Traceback" not in err, err
    got = json.loads(out)
    assert got["basemap"] is None and got["views_per_scale"] is None and got["views"] > 0


@needs_model
def test_localizer_load_refuses_a_corrupted_encoder_as_bundle_error(sealed, tmp_path):
    from earthfix.onboard.localizer import Localizer
    enc = tmp_path / "enc.onnx"
    shutil.copyfile(ENCODER, enc)
    flip(enc, 1, 0xFF)
    with pytest.raises(BundleError):
        Localizer.load(sealed, config=dict(localizer_config(), encoder=str(enc)))


# ---- config errors on the command line -----------------------------------------------------------------

@needs_model
def test_config_errors_name_the_key(sealed, env, tmp_path, capfd):
    for text, key in (("deadline_ms: .nan\n", "deadline_ms"), ("thread: 2\n", "thread"),
                      ("verify: {ratio: high}\n", "verify.ratio"), ("top_k: [1\n", "not valid YAML")):
        cfg = tmp_path / "bad.yaml"
        cfg.write_text(f"encoder: {ENCODER}\n" + text)
        rc, out, err = run_cli(["locate", "--camera", env["camera"], "--config", str(cfg), "--bundle", str(sealed),
                                *env["frames"]], capfd)
        assert_refused(rc, out, err, key)


# ---- no unsafe deserialisation anywhere in the code base -------------------------------------------------

FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "marshal", "shelve", "joblib"}
UNSAFE_YAML = {"load", "load_all", "unsafe_load", "unsafe_load_all", "full_load", "full_load_all", "Loader",
               "UnsafeLoader", "FullLoader", "CLoader", "CUnsafeLoader", "CFullLoader"}


def _kw(call: ast.Call, name: str):
    for k in call.keywords:
        if k.arg == name:
            return k.value.value if isinstance(k.value, ast.Constant) else "<expr>"
    return None


def scan(root: Path) -> tuple[list[str], list[str]]:
    bad, implicit = [], []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        tree = ast.parse(path.read_text(), filename=rel)
        for node in ast.walk(tree):
            where = f"{rel}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Import):
                bad += [f"{where} import {a.name}" for a in node.names if a.name.split(".")[0] in FORBIDDEN_MODULES]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in FORBIDDEN_MODULES:
                bad.append(f"{where} from {node.module} import")
            elif isinstance(node, ast.ImportFrom) and node.module == "yaml":
                bad += [f"{where} from yaml import {a.name}" for a in node.names if a.name in UNSAFE_YAML]
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "yaml" \
                    and node.attr in UNSAFE_YAML:
                bad.append(f"{where} yaml.{node.attr}")
            elif isinstance(node, ast.Call):
                f = node.func
                if isinstance(f, ast.Name) and f.id in ("eval", "exec"):
                    bad.append(f"{where} {f.id}()")
                if _kw(node, "allow_pickle") not in (None, False):
                    bad.append(f"{where} allow_pickle={_kw(node, 'allow_pickle')}")
                if isinstance(f, ast.Attribute) and f.attr == "load" and isinstance(f.value, ast.Name):
                    if f.value.id in ("np", "numpy") and _kw(node, "allow_pickle") is not False:
                        implicit.append(f"{where} np.load without allow_pickle=False")
                    if f.value.id == "torch" and _kw(node, "weights_only") is not True:
                        bad.append(f"{where} torch.load without weights_only=True")
    return bad, implicit


def test_no_pickle_eval_or_unsafe_yaml_in_the_code_base():
    bad, implicit = scan(REPO / "earthfix")
    assert bad == []
    # numpy's default is safe (allow_pickle=False since 1.16.3), but every load, flight or ground, says so
    assert implicit == [], "pass allow_pickle=False to np.load"
    import inspect
    assert inspect.signature(np.load).parameters["allow_pickle"].default is False


def test_the_scan_finds_what_it_looks_for(tmp_path, monkeypatch):
    src = tmp_path / "earthfix" / "x.py"
    src.parent.mkdir()
    src.write_text("import pickle\nimport yaml, numpy as np, torch\nyaml.load(s)\neval('1')\nnp.load(f)\n"
                   "np.load(f, allow_pickle=True)\ntorch.load(p)\nmodel.eval()\nyaml.safe_load(s)\n"
                   "np.load(f, allow_pickle=False)\n")
    monkeypatch.setattr(__import__(__name__), "REPO", tmp_path)
    bad, implicit = scan(tmp_path / "earthfix")
    assert len(bad) == 5 and len(implicit) == 2, (bad, implicit)
