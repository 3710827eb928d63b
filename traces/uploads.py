"""Saving uploaded trace files: streamed to disk under the upload directory,
named by content hash, then ingested like any other file.

An upload lands at `TRACER_UPLOAD_DIR/<sha256[:2]>/<sha256>/<safe name>`, so the
same file uploaded twice is the same path: the loader sees it unchanged.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile

from traces.ingest.loader import ingest_paths
from traces.ingest.report import IngestReport

# Well under the usual 255-byte limit of a file name, leaving room for the suffix.
MAX_NAME_BYTES = 200
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


class UploadTooLarge(Exception):
    def __init__(self, limit: int):
        self.limit = limit
        super().__init__(f"the upload is larger than the limit of {limit:,} bytes")


@dataclass
class SavedUpload:
    path: Path
    original_name: str
    size: int
    sha256: str


def safe_basename(name: str) -> str:
    """A file name that is only a name: no directories (either slash), no NUL
    or control characters, no leading dots, at most MAX_NAME_BYTES of UTF-8."""
    base = _UNSAFE.sub("", name.replace("\\", "/")).split("/")[-1].strip().lstrip(".")
    if not base:
        return "upload"
    stem, dot, suffix = base.rpartition(".")
    if not dot or len(suffix.encode()) > 20:
        stem, suffix = base, ""
    suffix = f".{suffix}" if suffix else ""
    budget = MAX_NAME_BYTES - len(suffix.encode())
    stem = stem.encode()[:budget].decode(errors="ignore") or "upload"
    return stem + suffix


def save_uploads(files: Iterable[UploadedFile], limit: int | None = None) -> list[SavedUpload]:
    """Stream each upload to its content-addressed place. Over `limit` bytes in
    total, everything this call wrote is removed and UploadTooLarge is raised."""
    limit = settings.TRACER_MAX_UPLOAD_BYTES if limit is None else limit
    root = Path(settings.TRACER_UPLOAD_DIR)
    incoming = root / ".incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    saved: list[SavedUpload] = []
    created: list[Path] = []
    total = 0
    try:
        for upload in files:
            temp, size, digest = _stream_to_temp(upload, incoming, limit - total)
            total += size
            destination = root / digest[:2] / digest / safe_basename(upload.name or "")
            if _place(temp, destination):
                created.append(destination)
            saved.append(SavedUpload(destination, upload.name or destination.name, size, digest))
    except UploadTooLarge:
        for path in created:
            with contextlib.suppress(OSError):
                path.unlink()
                path.parent.rmdir()
        raise UploadTooLarge(limit) from None
    return saved


def _stream_to_temp(upload: UploadedFile, incoming: Path, budget: int) -> tuple[Path, int, str]:
    digest = hashlib.sha256()
    size = 0
    fd, name = tempfile.mkstemp(dir=incoming, prefix="upload-")
    temp = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            for chunk in upload.chunks():
                size += len(chunk)
                if size > budget:
                    raise UploadTooLarge(budget)
                digest.update(chunk)
                handle.write(chunk)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp, size, digest.hexdigest()


def _place(temp: Path, destination: Path) -> bool:
    """Move the new file into place; False if the same content and name is
    already there (it is kept untouched, so its size and mtime still match)."""
    if destination.exists():
        temp.unlink(missing_ok=True)
        return False
    destination.parent.mkdir(parents=True, exist_ok=True)
    os.replace(temp, destination)
    return True


def ingest_uploads(saved: list[SavedUpload]) -> IngestReport:
    """Ingest saved uploads now, each known by the name it was uploaded as."""
    paths, names = _paths_and_names(saved)
    return ingest_paths(paths, uploaded=True, display_names=names)


def enqueue_upload(saved: list[SavedUpload]):
    """Ingest saved uploads in a background job (inline when background
    ingestion is off); returns the IngestJob."""
    from traces.tasks import enqueue_ingest

    paths, names = _paths_and_names(saved)
    return enqueue_ingest(paths, kind="upload", uploaded=True, display_names=names)


def _paths_and_names(saved: list[SavedUpload]) -> tuple[list[str], dict[str, str]]:
    paths = list(dict.fromkeys(str(upload.path) for upload in saved))
    return paths, {str(upload.path): upload.original_name for upload in saved}
