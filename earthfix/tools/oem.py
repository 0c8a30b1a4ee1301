"""CCSDS Orbit Ephemeris Message (OEM 2.0, CCSDS 502.0-B-2), KVN text: a writer and a small strict reader.

Units as the standard wants them: positions in km, velocities in km/s, covariance in km², km²/s, km²/s².
Epochs are UTC, written ``YYYY-MM-DDThh:mm:ss.ffffff`` (CCSDS ASCII time code A, no zone suffix).

Reference frame: EarthFix works in WGS84 ECEF, which we write as ``REF_FRAME = ITRF`` (the SANA name of
the terrestrial frame; WGS84 and ITRF agree at the centimetre level, polar motion is neglected, see
earthfix.sim.orbit). Velocities are Earth-relative (the time derivative of the ITRF position), which is
what an OEM in a rotating frame means. ``ref_frame`` can be set to another name when the caller has
converted the states itself.

The reader checks what our files must satisfy (header, one or more segments, mandatory metadata, data
lines of 7 or 10 numbers inside START/STOP and in time order, 21-value lower-triangular covariances) and
raises ``OEMError`` with the line number otherwise. It is used by the tests to prove the files parse.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

VERSION = "2.0"
REQUIRED_META = ("OBJECT_NAME", "OBJECT_ID", "CENTER_NAME", "REF_FRAME", "TIME_SYSTEM", "START_TIME",
                 "STOP_TIME")
OPTIONAL_META = ("REF_FRAME_EPOCH", "USEABLE_START_TIME", "USEABLE_STOP_TIME", "INTERPOLATION",
                 "INTERPOLATION_DEGREE")
_EPOCH_RE = re.compile(r"^\d{4}-(\d{2}-\d{2}|\d{3})T\d{2}:\d{2}:\d{2}(\.\d+)?Z?$")
_KV_RE = re.compile(r"^([A-Z0-9_]+)\s*=\s*(.*?)\s*$")


class OEMError(ValueError):
    """A file that is not a valid OEM (as far as the strict reader checks)."""


def format_epoch(t) -> str:
    """UTC datetime (aware or naive-UTC) or POSIX seconds to the OEM epoch text (microseconds)."""
    if not isinstance(t, datetime):
        t = datetime.fromtimestamp(float(t), tz=timezone.utc)
    elif t.tzinfo is not None:
        t = t.astimezone(timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")


def parse_epoch(text: str) -> datetime:
    """OEM epoch text (calendar or day-of-year form, optional fraction, optional Z) to an aware UTC datetime."""
    s = text.strip()
    if not _EPOCH_RE.match(s):
        raise OEMError(f"not a CCSDS epoch: {text!r}")
    s = s.rstrip("Z")
    date, clock = s.split("T")
    frac = ""
    if "." in clock:
        clock, frac = clock.split(".")
    fmt = "%Y-%jT%H:%M:%S" if len(date) == 8 else "%Y-%m-%dT%H:%M:%S"
    t = datetime.strptime(f"{date}T{clock}", fmt).replace(tzinfo=timezone.utc)
    if frac:
        t = t.replace(microsecond=int(round(float("0." + frac) * 1e6)) % 1000000)
    return t


@dataclass
class Segment:
    """One META block and its ephemeris lines (and covariances)."""
    meta: dict
    epochs: list                                   # aware UTC datetimes
    states: np.ndarray                             # (n, 6) km, km/s (or (n, 9) with accelerations)
    covariances: list = field(default_factory=list)   # [(epoch datetime, frame or None, (6, 6) array)]


@dataclass
class OEM:
    header: dict
    segments: list
    comments: list = field(default_factory=list)


def write_oem(path, epochs, states, *, object_name: str, object_id: str = "UNKNOWN",
              ref_frame: str = "ITRF", center_name: str = "EARTH", originator: str = "EARTHFIX",
              covariances=None, comments=(), creation_date=None, interpolation: str | None = "HERMITE",
              interpolation_degree: int = 5) -> Path:
    """Write a one-segment OEM.

    ``epochs``: UTC datetimes or POSIX seconds, strictly increasing. ``states``: (n, 6) km and km/s in
    ``ref_frame``. ``covariances``: optional [(epoch, (6, 6) array)] in the same frame, written as
    lower-triangular COVARIANCE blocks. ``comments`` go after the header as COMMENT lines.
    """
    states = np.asarray(states, dtype=float)
    if states.ndim != 2 or states.shape[1] != 6 or len(states) != len(epochs) or len(states) == 0:
        raise OEMError(f"states must be (n, 6) with one epoch each, got {states.shape} for {len(epochs)}")
    if not np.isfinite(states).all():
        raise OEMError("states contain NaN or inf")
    texts = [format_epoch(t) for t in epochs]
    stamps = [parse_epoch(s) for s in texts]
    if any(b <= a for a, b in zip(stamps, stamps[1:])):
        raise OEMError("epochs must be strictly increasing")
    created = format_epoch(creation_date or datetime.now(timezone.utc))
    lines = [f"CCSDS_OEM_VERS = {VERSION}"]
    lines += [f"COMMENT {c}" for c in comments]
    lines += [f"CREATION_DATE = {created}", f"ORIGINATOR = {_clean(originator)}", "",
              "META_START",
              f"OBJECT_NAME = {_clean(object_name)}",
              f"OBJECT_ID = {_clean(object_id)}",
              f"CENTER_NAME = {_clean(center_name)}",
              f"REF_FRAME = {_clean(ref_frame)}",
              "TIME_SYSTEM = UTC",
              f"START_TIME = {texts[0]}",
              f"STOP_TIME = {texts[-1]}"]
    if interpolation and len(states) > interpolation_degree:
        lines += [f"INTERPOLATION = {interpolation}", f"INTERPOLATION_DEGREE = {int(interpolation_degree)}"]
    lines += ["META_STOP", ""]
    for s, x in zip(texts, states):
        lines.append(s + " " + " ".join(f"{v: .6f}" if i < 3 else f"{v: .9f}" for i, v in enumerate(x)))
    if covariances:
        lines += ["", "COVARIANCE_START"]
        for t, cov in covariances:
            cov = np.asarray(cov, dtype=float)
            if cov.shape != (6, 6) or not np.isfinite(cov).all():
                raise OEMError("a covariance must be a finite 6x6 matrix")
            cov = 0.5 * (cov + cov.T)
            lines.append(f"EPOCH = {format_epoch(t)}")
            lines.append(f"COV_REF_FRAME = {_clean(ref_frame)}")
            for i in range(6):
                lines.append(" ".join(f"{cov[i, j]: .7e}" for j in range(i + 1)))
        lines.append("COVARIANCE_STOP")
    path = Path(path)
    path.write_text("\n".join(lines) + "\n")
    return path


def _clean(value) -> str:
    """A metadata value on one line (KVN has no quoting)."""
    s = " ".join(str(value).split())
    return s if s else "UNKNOWN"


def read_oem(path) -> OEM:
    """Parse a KVN OEM strictly (see the module docstring); raises OEMError with the line number."""
    text = Path(path).read_text()
    lines = text.splitlines()
    header: dict = {}
    comments: list = []
    segments: list = []
    rows: list = []                                # ephemeris rows, one list per segment
    state = "header"
    meta: dict = {}
    cov_epoch = cov_frame = None
    cov_rows: list = []

    def fail(no, msg):
        raise OEMError(f"{Path(path).name}:{no}: {msg}")

    for no, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line:
            continue
        if not header:
            m = _KV_RE.match(line)
            if not m or m.group(1) != "CCSDS_OEM_VERS":
                fail(no, "the first line must be CCSDS_OEM_VERS = ...")
            if m.group(2) not in ("1.0", "2.0", "3.0"):
                fail(no, f"unknown OEM version {m.group(2)!r}")
            header["CCSDS_OEM_VERS"] = m.group(2)
            continue
        if line.startswith("COMMENT"):
            comments.append(line[7:].strip())
            continue
        if state == "header":
            if line == "META_START":
                for key in ("CREATION_DATE", "ORIGINATOR"):
                    if key not in header:
                        fail(no, f"header keyword {key} missing")
                parse_epoch(header["CREATION_DATE"])
                state, meta = "meta", {}
                continue
            m = _KV_RE.match(line)
            if not m or m.group(1) not in ("CREATION_DATE", "ORIGINATOR", "MESSAGE_ID"):
                fail(no, f"unexpected header line {line!r}")
            header[m.group(1)] = m.group(2)
        elif state == "meta":
            if line == "META_STOP":
                for key in REQUIRED_META:
                    if not meta.get(key):
                        fail(no, f"metadata keyword {key} missing")
                if meta["TIME_SYSTEM"] != "UTC":
                    fail(no, f"TIME_SYSTEM {meta['TIME_SYSTEM']!r}: this reader handles UTC only")
                start, stop = parse_epoch(meta["START_TIME"]), parse_epoch(meta["STOP_TIME"])
                if stop < start:
                    fail(no, "STOP_TIME before START_TIME")
                segments.append(Segment(meta, [], np.zeros((0, 6))))
                rows.append([])
                state = "data"
                continue
            m = _KV_RE.match(line)
            if not m or m.group(1) not in REQUIRED_META + OPTIONAL_META:
                fail(no, f"unexpected metadata line {line!r}")
            if m.group(1) in meta:
                fail(no, f"metadata keyword {m.group(1)} repeated")
            meta[m.group(1)] = m.group(2)
        elif state == "data":
            if line == "META_START":
                state, meta = "meta", {}
                continue
            if line == "COVARIANCE_START":
                state, cov_epoch, cov_frame, cov_rows = "cov", None, None, []
                continue
            parts = line.split()
            if len(parts) not in (7, 10):
                fail(no, f"an ephemeris line needs an epoch and 6 (or 9) numbers, got {len(parts) - 1}")
            t = parse_epoch(parts[0])
            try:
                vals = [float(v) for v in parts[1:]]
            except ValueError:
                fail(no, "non-numeric ephemeris value")
            if not all(math.isfinite(v) for v in vals):
                fail(no, "non-finite ephemeris value")
            seg = segments[-1]
            if rows[-1] and len(vals) != len(rows[-1][-1]):
                fail(no, "ephemeris lines of mixed lengths")
            if seg.epochs and t <= seg.epochs[-1]:
                fail(no, "ephemeris epochs not strictly increasing")
            if not parse_epoch(seg.meta["START_TIME"]) <= t <= parse_epoch(seg.meta["STOP_TIME"]):
                fail(no, "ephemeris epoch outside START_TIME..STOP_TIME")
            seg.epochs.append(t)
            rows[-1].append(vals)
        elif state == "cov":
            if line == "COVARIANCE_STOP":
                if cov_rows:
                    fail(no, "incomplete covariance matrix")
                state = "data_done"
                continue
            m = _KV_RE.match(line)
            if m:
                if cov_rows:
                    fail(no, "covariance keyword inside a matrix")
                if m.group(1) == "EPOCH":
                    if cov_epoch is not None:
                        fail(no, "covariance EPOCH without a matrix")
                    cov_epoch = parse_epoch(m.group(2))
                elif m.group(1) == "COV_REF_FRAME":
                    cov_frame = m.group(2)
                else:
                    fail(no, f"unexpected covariance keyword {m.group(1)}")
                continue
            if cov_epoch is None:
                fail(no, "covariance matrix without EPOCH")
            try:
                row = [float(v) for v in line.split()]
            except ValueError:
                fail(no, "non-numeric covariance value")
            if len(row) != len(cov_rows) + 1:
                fail(no, f"covariance row {len(cov_rows) + 1} needs {len(cov_rows) + 1} values")
            cov_rows.append(row)
            if len(cov_rows) == 6:
                c = np.zeros((6, 6))
                for i, r in enumerate(cov_rows):
                    c[i, :i + 1] = r
                c = c + np.tril(c, -1).T
                segments[-1].covariances.append((cov_epoch, cov_frame, c))
                cov_epoch, cov_frame, cov_rows = None, None, []
        elif state == "data_done":
            if line == "META_START":
                state, meta = "meta", {}
                continue
            fail(no, f"unexpected line after COVARIANCE_STOP: {line!r}")
    if not header:
        raise OEMError(f"{Path(path).name}: empty file")
    if state in ("meta", "cov") or not segments:
        raise OEMError(f"{Path(path).name}: truncated (no complete segment)")
    for seg, seg_rows in zip(segments, rows):
        if not seg_rows:
            raise OEMError(f"{Path(path).name}: a segment without ephemeris lines")
        seg.states = np.asarray(seg_rows, dtype=float)
    return OEM(header, segments, comments)
