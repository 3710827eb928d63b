"""Safe extraction of uploaded zip archives. No Django here.

An archive is hostile until proven otherwise: members may try to escape the
target directory (`../x`, `/etc/x`), be symlinks, or decompress to far more
than they claim (zip bombs). Each bad member is reported by name; the good
ones are extracted.
"""

from __future__ import annotations

import contextlib
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

MAX_MEMBERS = 10_000
MAX_TOTAL_BYTES = 4 * 1024**3
# Past this expansion (and past BOMB_FLOOR bytes) a member is a zip bomb: SQLite files
# full of empty pages legitimately compress a few hundred times.
MAX_RATIO = 1000
BOMB_FLOOR = 64 * 1024**2
CHUNK = 1024 * 1024


class ArchiveError(Exception):
    """The archive as a whole cannot be read."""


@dataclass
class Member:
    name: str
    path: Path | None = None
    error: str = ""


def extract_zip(archive: Path, target: Path) -> list[Member]:
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_MEMBERS:
                raise ArchiveError(f"archive has {len(infos)} members; at most {MAX_MEMBERS}")
            budget = [MAX_TOTAL_BYTES]
            return [
                _extract_member(zf, info, target, budget) for info in infos if not info.is_dir()
            ]
    except zipfile.BadZipFile as exc:
        raise ArchiveError(f"not a readable zip archive: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ArchiveError(
            "not a readable zip archive: a member name is flagged UTF-8 but is not"
        ) from exc
    except (OSError, ValueError, EOFError) as exc:
        raise ArchiveError(f"cannot read archive: {exc}") from exc


def _extract_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: list[int]):
    name = info.filename
    problem = _unsafe_name(name) or _unsafe_kind(info)
    if problem:
        return Member(name, error=f"refused archive member: {problem}")
    destination = target.joinpath(*PurePosixPath(name).parts)
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        _copy_bounded(zf, info, destination, budget)
    except _TooBig as exc:
        _remove(destination)
        return Member(name, error=f"refused archive member: {exc}")
    except OSError as exc:  # a name too long, a file where a directory must go
        _remove(destination)
        return Member(name, error=f"cannot extract archive member: {exc.strerror or exc}")
    # zlib.error: corrupt deflate data; RuntimeError: encrypted; NotImplementedError:
    # a compression method zipfile lacks.
    except (zipfile.BadZipFile, zlib.error, RuntimeError, EOFError, NotImplementedError) as exc:
        _remove(destination)
        return Member(name, error=f"corrupt archive member: {exc}")
    return Member(name, path=destination)


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def _unsafe_name(name: str) -> str:
    if "\x00" in name:
        return "name contains a NUL byte"
    normalised = name.replace("\\", "/")
    if normalised.startswith("/") or (len(normalised) > 1 and normalised[1] == ":"):
        return f"absolute path {name!r}"
    if ".." in PurePosixPath(normalised).parts:
        return f"path {name!r} leaves the archive"
    return ""


def _unsafe_kind(info: zipfile.ZipInfo) -> str:
    mode = info.external_attr >> 16
    if mode and not (stat.S_ISREG(mode) or mode & 0o170000 == 0):
        return f"{info.filename!r} is not a regular file (symlink or device)"
    return ""


class _TooBig(Exception):
    pass


def _copy_bounded(zf: zipfile.ZipFile, info: zipfile.ZipInfo, destination: Path, budget: list[int]):
    """Copy a member, stopping as soon as it outgrows its claimed size, the
    bomb ratio or the archive's total budget (the header can lie)."""
    limit = max(info.compress_size * MAX_RATIO, BOMB_FLOOR)
    written = 0
    with zf.open(info) as source, open(destination, "wb") as sink:
        while chunk := source.read(CHUNK):
            written += len(chunk)
            budget[0] -= len(chunk)
            if written > limit:
                raise _TooBig(f"{info.filename!r} expands more than {MAX_RATIO}x (a zip bomb?)")
            if budget[0] < 0:
                raise _TooBig(f"archive expands past {_size(MAX_TOTAL_BYTES)}")
            sink.write(chunk)


def _size(count: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if count >= scale:
            return f"{count / scale:g} {unit}"
    return f"{count} bytes"
