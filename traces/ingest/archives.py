"""Safe extraction of uploaded zip archives. No Django here.

An archive is hostile until proven otherwise: members may try to escape the
target directory (`../x`, `/etc/x`), be symlinks, or decompress to far more
than they claim (zip bombs). Each bad member is reported by name; the good
ones are extracted.

Each extracted file keeps the member's modified time, which dates a greentic
run and tells a quiet duckflux run from a live one. The exact UTC time of an
Info-ZIP ("UT") or NTFS extra field is used when the member has one; else the
zip header's date and time, which carry no zone, are read as UTC (the zone of
whoever made the archive is unknown here; Python's zipfile and most tools
write local time, so such a member can be off by its maker's UTC offset).
A date before 1980-01-02 (the zip minimum, which tools write for "no date") or
more than a day ahead is not believed: that member is dated when extracted.
"""

from __future__ import annotations

import contextlib
import os
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath

MAX_MEMBERS = 10_000
MAX_TOTAL_BYTES = 4 * 1024**3
# Past this expansion (and past BOMB_FLOOR bytes) a member is a zip bomb: SQLite files
# full of empty pages legitimately compress a few hundred times.
MAX_RATIO = 1000
BOMB_FLOOR = 64 * 1024**2
CHUNK = 1024 * 1024
# Member dates outside these bounds are not believed (see the module docstring).
EARLIEST_DATE = datetime(1980, 1, 2, tzinfo=UTC)
FUTURE_SLACK = timedelta(days=1)


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
        _set_mtime(destination, info)
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


def _set_mtime(destination: Path, info: zipfile.ZipInfo) -> None:
    moment = member_mtime(info)
    if moment is not None:
        with contextlib.suppress(OSError):  # then it is dated when extracted, as before
            os.utime(destination, (moment.timestamp(), moment.timestamp()))


def member_mtime(info: zipfile.ZipInfo) -> datetime | None:
    """The member's modified time (UTC), or None when it has none worth believing."""
    moment = _extra_mtime(info.extra)
    if moment is None:
        try:
            moment = datetime(*info.date_time, tzinfo=UTC)
        except (TypeError, ValueError):  # month 0, day 31 of February, ...
            return None
    if moment < EARLIEST_DATE or moment > datetime.now(UTC) + FUTURE_SLACK:
        return None
    return moment


def _extra_mtime(extra: bytes) -> datetime | None:
    """The UTC mtime of an Info-ZIP extended timestamp (0x5455) or NTFS (0x000a)
    extra field; None without one or when it is malformed."""
    try:
        while len(extra) >= 4:
            kind, size = struct.unpack("<HH", extra[:4])
            data = extra[4 : 4 + size]
            if kind == 0x5455 and len(data) >= 5 and data[0] & 1:
                return datetime.fromtimestamp(struct.unpack("<i", data[1:5])[0], tz=UTC)
            if kind == 0x000A:
                # 4 reserved bytes, then tagged attributes; tag 1 = mtime, atime, ctime.
                at = 4
                while at + 4 <= len(data):
                    tag, length = struct.unpack("<HH", data[at : at + 4])
                    if tag == 1 and length >= 8 and at + 12 <= len(data):
                        ticks = struct.unpack("<Q", data[at + 4 : at + 12])[0]
                        return datetime(1601, 1, 1, tzinfo=UTC) + timedelta(
                            microseconds=ticks // 10
                        )
                    at += 4 + length
            extra = extra[4 + size :]
    except (struct.error, ValueError, OverflowError, OSError):
        return None
    return None


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
