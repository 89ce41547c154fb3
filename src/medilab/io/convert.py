"""Convert a folder tree of DICOM files to PNG, with a PHI-free ``manifest.csv``.

Per file: decode → ``standardise_dicom`` (modality LUT, VOI / window, MONOCHROME1 inversion)
→ optional log transform → optional simplest color balance → optional resize with padding →
8/16-bit PNG mirroring the source's relative path (``a/b/img.dcm`` → ``a/b/img.png``;
multi-frame files give ``img_f0000.png``, ``img_f0001.png``, …). Files whose outputs exist
are skipped. Unreadable files are listed in ``errors.csv`` and never stop the batch.

Patient keys: without an explicit salt, a random salt is drawn on the first run and kept in
``<dst>/.medilab_salt`` (owner read/write only, never listed in the manifest), so re-runs into
the same output folder give the same ``patient_key`` for the same patient. Keep that file
private: with it, a known PatientID can be matched to its key. An explicit salt always wins
and is not stored.
"""

from __future__ import annotations

import csv
import io
import multiprocessing
import os
import secrets
import tempfile
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medilab.errors import InputFileError, MedilabError
from medilab.io.atomic import write_text
from medilab.io.dicom import (
    DICOM_SUFFIXES,
    ct_window_preset,
    decode_pixels,
    has_dicom_magic,
    is_color,
    read_dataset,
    standardise_dicom,
)
from medilab.io.images import write_png
from medilab.io.intensity import (
    ResizeInfo,
    log_transform,
    parse_window,
    resize,
    resize_info,
    simplest_color_balance,
)
from medilab.io.messages import one_line
from medilab.io.phi import dicom_metadata, patient_key

MANIFEST = "manifest.csv"
ERRORS = "errors.csv"
SALT_FILE = ".medilab_salt"
ROW_HEAD = ("output", "source", "frame", "patient_key")
RESIZE_COLUMNS = ("scale_y", "scale_x", "pad_top", "pad_left")


@dataclass(frozen=True)
class ConvertOptions:
    """How to convert. ``window``: ``None`` uses each file's first VOI LUT / window (min–max
    when it has none), or a preset name / ``"C,W"`` / ``(center, width)``. ``color_balance`` is
    the total saturated percentage (half per side). ``salt`` keys patients; without one the
    output folder's private ``.medilab_salt`` is used (drawn at random on the first run), so
    keys stay the same across re-runs into one folder. Existing outputs are
    skipped (so a re-run finishes an interrupted batch) unless ``overwrite``; after changing
    other options, use ``overwrite=True`` or a fresh ``dst``. ``pseudonymise_paths`` names each
    PNG by a salted hash of its source path, flat in ``dst`` (folder names in DICOM archives are
    often patient IDs), and leaves the manifest's ``source`` column empty; the stored (or given)
    salt makes a re-run find the same names."""

    log: bool = False
    color_balance: float | None = None
    window: str | tuple[float, float] | None = None
    size: int | None = None
    keep_aspect: bool = True
    bits: int = 8
    workers: int = 1
    salt: str | None = None
    overwrite: bool = False
    pseudonymise_paths: bool = False

    def check(self) -> None:
        """Raise ``MedilabError`` on an invalid option (before any file is touched)."""
        if self.bits not in (8, 16):
            raise MedilabError(f"bits: must be 8 or 16, got {self.bits}")
        if self.workers < 1:
            raise MedilabError(f"workers: must be at least 1, got {self.workers}")
        if self.size is not None and self.size < 1:
            raise MedilabError(f"size: must be positive, got {self.size}")
        if self.color_balance is not None and not 0 <= self.color_balance < 100:
            raise MedilabError(f"color balance: must be in [0, 100), got {self.color_balance}")
        if self.window is not None:
            parse_window(self.window)


@dataclass
class ConvertSummary:
    """Counts of one ``convert_tree`` run (files, not frames) and where the tables are."""

    total: int = 0
    converted: int = 0
    skipped: int = 0
    failed: int = 0
    ignored: int = 0
    manifest: Path | None = None
    errors: Path | None = None
    salt_generated: bool = False
    salt_file: Path | None = None
    identifiers_in_paths: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def describe(self) -> str:
        return (
            f"{self.total} DICOM files: {self.converted} converted, {self.skipped} skipped "
            f"(already done), {self.failed} failed; {self.ignored} other files ignored"
        )


@dataclass(frozen=True)
class _Job:
    source: str
    relative: str
    output: str  # relative to dst, posix
    target: str
    options: ConvertOptions


@dataclass
class _Result:
    relative: str
    status: str  # "converted", "skipped" or "failed"
    rows: list[dict[str, Any]] = field(default_factory=list)
    reason: str = ""
    identifier_in_path: bool = False
    modality: str | None = None  # set when a CT window preset met a non-CT file


def output_name(relative: Path, options: ConvertOptions | None = None) -> Path:
    """``a/b/img.dcm`` → ``a/b/img.png``; a name without a DICOM suffix gets ``.png`` added.

    With ``options.pseudonymise_paths``: ``<16 hex digits of a salted hash of the path>.png``.
    """
    if options is not None and options.pseudonymise_paths:
        return Path(patient_key(relative.as_posix(), options.salt or "") + ".png")
    if relative.suffix.lower() in DICOM_SUFFIXES:
        return relative.with_suffix(".png")
    return relative.with_name(relative.name + ".png")


def _identifier_in_path(relative: str, header: Any) -> bool:
    """True when a folder/file name of ``relative`` holds the PatientID or a name part."""
    text = f"{header.get('PatientID') or ''} {header.get('PatientName') or ''}"
    words = {w.lower() for w in text.replace("^", " ").split() if len(w) > 2}
    parts = [p.lower() for p in Path(relative).parts]
    return any(w in part for w in words for part in parts)


def find_dicom_files(src: Path, exclude: Path | None = None) -> tuple[list[Path], int]:
    """DICOM candidates under ``src``, sorted, and the number of other files ignored.

    A file is a candidate when it has a DICOM suffix (``.dcm``, ``.dicom``, ``.dic``, ``.ima``)
    or the DICM magic; so README or LICENSE files are ignored, while a broken ``.dcm`` is
    reported. Hidden files/folders, DICOMDIR and the ``exclude`` folder are left out.
    """
    found, ignored = [], 0
    exclude = exclude.resolve() if exclude is not None else None
    for root, dirs, files in os.walk(src):
        here = Path(root)
        dirs[:] = sorted(
            d for d in dirs
            if not d.startswith(".") and (exclude is None or (here / d).resolve() != exclude)
        )
        for name in sorted(files):
            path = here / name
            if name.startswith("."):
                continue
            if name.upper() != "DICOMDIR" and (
                path.suffix.lower() in DICOM_SUFFIXES or has_dicom_magic(path)
            ):
                found.append(path)
            else:
                ignored += 1
    return found, ignored


def _frame_targets(target: Path, frames: int) -> list[Path]:
    if frames <= 1:
        return [target]
    return [target.with_name(f"{target.stem}_f{i:04d}.png") for i in range(frames)]


def _process_image(x: np.ndarray, colour: bool, options: ConvertOptions) -> np.ndarray:
    if options.log:
        x = log_transform(x)
    if options.color_balance:
        x = simplest_color_balance(x, options.color_balance, channel_axis=-1 if colour else None)
    if options.size:
        x, _ = resize(x, options.size, keep_aspect=options.keep_aspect)
        x = np.clip(x, 0.0, 1.0)
    return x


def _rows(
    job: _Job, targets: list[Path], meta: dict[str, Any], info: ResizeInfo | None
) -> list[dict[str, Any]]:
    rows = []
    for frame, target in enumerate(targets):
        row: dict[str, Any] = {
            "output": (Path(job.output).parent / target.name).as_posix(),
            "source": "" if job.options.pseudonymise_paths else job.relative,
            "frame": frame if len(targets) > 1 else "",
        }
        row.update(meta)
        if info is not None:
            row.update(
                scale_y=info.scale_y, scale_x=info.scale_x,
                pad_top=info.pad_top, pad_left=info.pad_left,
            )
        rows.append(row)
    return rows


def _convert_one(job: _Job) -> _Result:
    """Convert one file; every problem becomes a ``failed`` result with a one-line reason."""
    options, source, target = job.options, Path(job.source), Path(job.target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's per-file warnings would drown the progress bar
        return _convert_checked(job, options, source, target)


def _convert_checked(job: _Job, options: ConvertOptions, source: Path, target: Path) -> _Result:
    try:
        header = read_dataset(source, stop_before_pixels=True)
        if "Rows" not in header:
            sop = header.get("SOPClassUID")
            kind = f"{sop.name}, " if sop is not None else ""
            raise InputFileError(source, f"not a DICOM image ({kind}no pixel data)")
        frames = int(header.get("NumberOfFrames", 1) or 1)
        targets = _frame_targets(target, frames)
        meta = dicom_metadata(header, salt=options.salt)
        shape = (int(header.get("Rows", 0)), int(header.get("Columns", 0)))
        info = resize_info(shape, options.size, options.keep_aspect) if options.size else None
        flagged = not options.pseudonymise_paths and _identifier_in_path(job.relative, header)
        mismatch = _window_mismatch(options.window, header)
        if not options.overwrite and all(t.exists() for t in targets):
            rows = _rows(job, targets, meta, info)
            return _Result(job.relative, "skipped", rows, identifier_in_path=flagged)
        ds = read_dataset(source)
        pixels = decode_pixels(ds, source)
        x = standardise_dicom(ds, window=options.window or "first", output="float", pixels=pixels)
        colour = is_color(ds)
        stack = x if frames > 1 else x[None]
        for plane, out in zip(stack, targets, strict=True):
            write_png(out, _process_image(plane, colour, options), bits=options.bits)
        rows = _rows(job, targets, meta, info)
        return _Result(
            job.relative, "converted", rows, identifier_in_path=flagged, modality=mismatch
        )
    except InputFileError as exc:
        return _Result(job.relative, "failed", reason=exc.problem)
    except MedilabError as exc:
        return _Result(job.relative, "failed", reason=one_line(exc, limit=1000))
    except Exception as exc:  # never stop the batch
        reason = f"{type(exc).__name__}: {one_line(exc, limit=200)}"
        return _Result(job.relative, "failed", reason=reason)


def _window_mismatch(window: object, header: Any) -> str | None:
    """The file's modality when a CT (Hounsfield) window preset is applied to a non-CT image."""
    if ct_window_preset(window) is None or is_color(header):
        return None
    modality = str(header.get("Modality") or "").upper()
    return modality if modality and modality != "CT" else None


def _window_warning(window: object, results: list[_Result]) -> str | None:
    modalities = sorted({r.modality for r in results if r.modality})
    if not modalities:
        return None
    n = sum(1 for r in results if r.modality)
    return (
        f"window preset {ct_window_preset(window)!r} is a CT (Hounsfield unit) window but was "
        f"applied to {n} non-CT file(s) ({', '.join(modalities)}); their PNGs are likely "
        "nearly white or black. Omit --window to use each file's own VOI window"
    )


def _load_or_make_salt(dst: Path) -> tuple[str, bool]:
    """The salt stored in ``dst/.medilab_salt``, drawing and storing (mode 0600) a new one when
    there is none. Returns ``(salt, generated)``."""
    path = dst / SALT_FILE
    if path.is_file():
        salt = path.read_text(encoding="utf-8").strip()
        if not salt:
            raise InputFileError(
                path, "empty salt file; delete it to draw a new salt (patient keys will change)"
            )
        return salt, False
    dst.mkdir(parents=True, exist_ok=True)
    salt = secrets.token_hex(16)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f"{SALT_FILE}.", dir=dst)  # mode 0600
    except OSError as exc:  # name the salt file, not the temporary one
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(salt + "\n")
        os.link(tmp, path)  # complete file or none; never replaces one written meanwhile
    except FileExistsError:
        return _load_or_make_salt(dst)
    finally:
        os.unlink(tmp)
    return salt, True


def _csv_text(rows: list[dict[str, Any]], columns: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", restval="")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _run_jobs(jobs: list[_Job], workers: int, progress: bool) -> list[_Result]:
    from rich.progress import Progress

    results: list[_Result] = []
    with Progress(disable=not progress, transient=False) as bar:
        task = bar.add_task("converting DICOM", total=len(jobs))
        if workers == 1:
            for job in jobs:
                results.append(_convert_one(job))
                bar.advance(task)
            return results
        # spawn, not fork: safe when the caller holds threads (progress bar, torch, CUDA)
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = {pool.submit(_convert_one, job): job for job in jobs}
            for future in as_completed(futures):
                try:
                    results.append(future.result())
                except Exception as exc:  # a worker died (e.g. out of memory)
                    reason = f"worker failed: {type(exc).__name__}"
                    results.append(_Result(futures[future].relative, "failed", reason=reason))
                bar.advance(task)
    return results


def convert_tree(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    options: ConvertOptions | None = None,
    progress: bool = True,
) -> ConvertSummary:
    """Convert every DICOM file under ``src`` to PNG under ``dst`` (same relative folders);
    write ``dst/manifest.csv`` (output, source, frame, patient_key, PHI-free metadata, resize
    scale/padding) and ``dst/errors.csv`` (source, reason). Both are rewritten on each run and
    cover skipped files too. ``workers > 1`` uses a process pool; 1 runs inline.
    ``summary.identifiers_in_paths`` counts source paths holding the PatientID or a name part,
    which mirrored output paths would carry too (see ``pseudonymise_paths``).

    A ``src`` without DICOM files raises ``MedilabError`` and writes nothing. Without
    ``options.salt`` the salt comes from ``dst/.medilab_salt`` (created on the first run, mode
    0600; ``summary.salt_file``, ``summary.salt_generated``). Problems that do not stop the
    batch (a CT window preset on CR/DX/MR… files) are in ``summary.warnings`` and also issued
    with ``warnings.warn``."""
    options = options or ConvertOptions()
    options.check()
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise InputFileError(src, "source must be an existing folder")
    files, ignored = find_dicom_files(src, exclude=dst)
    if not files:
        raise MedilabError(
            f"no DICOM files under {src} ({ignored} other file(s) ignored; DICOM files need a "
            ".dcm/.dicom/.dic/.ima suffix or the DICM marker)"
        )
    summary = ConvertSummary(ignored=ignored)
    if options.salt is None:
        salt, summary.salt_generated = _load_or_make_salt(dst)
        summary.salt_file = dst / SALT_FILE
        options = ConvertOptions(**{**options.__dict__, "salt": salt})
    jobs, claimed, results = [], {}, []
    for path in files:
        relative = path.relative_to(src)
        name = output_name(relative, options)
        if name.as_posix().lower() in claimed:
            other = claimed[name.as_posix().lower()]
            reason = f"output {name.as_posix()} would overwrite the PNG of {other}"
            results.append(_Result(relative.as_posix(), "failed", reason=reason))
            continue
        claimed[name.as_posix().lower()] = relative.as_posix()
        jobs.append(
            _Job(str(path), relative.as_posix(), name.as_posix(), str(dst / name), options)
        )
    results += _run_jobs(jobs, options.workers, progress)
    results.sort(key=lambda r: r.relative)
    rows = [row for r in results for row in r.rows]
    meta_columns = [k for k in rows[0] if k not in ROW_HEAD + RESIZE_COLUMNS] if rows else []
    columns = [*ROW_HEAD, *meta_columns, *(RESIZE_COLUMNS if options.size else ())]
    summary.failures = [(r.relative, r.reason) for r in results if r.status == "failed"]
    summary.manifest = write_text(dst / MANIFEST, _csv_text(rows, columns))
    error_rows = [{"source": s, "reason": why} for s, why in summary.failures]
    summary.errors = write_text(dst / ERRORS, _csv_text(error_rows, ["source", "reason"]))
    summary.total = len(results)
    summary.converted = sum(r.status == "converted" for r in results)
    summary.skipped = sum(r.status == "skipped" for r in results)
    summary.failed = len(summary.failures)
    summary.identifiers_in_paths = sum(r.identifier_in_path for r in results)
    message = _window_warning(options.window, results)
    if message:
        summary.warnings.append(message)
        warnings.warn(message, UserWarning, stacklevel=2)
    return summary
