"""Where a dataset's files are, how to open them, and how to download them.

Files are read as published: from a directory, from a .zip archive (members may sit in a
folder, as ``ml-100k.zip`` -> ``ml-100k/u.data``), or as plain or gzip-compressed files.
:class:`FileSet` hides the difference: ``find("u.data")`` finds ``u.data`` or ``u.data.gz``
at any depth of a directory, inside any .zip archive in it, or inside the archive given.

:func:`locate` decides where a named dataset's files are, in this order: the explicit ``path``;
``$TASTEMAKER_DATA/<name>/``; the download cache (``$TASTEMAKER_CACHE/<name>/``, by default
``~/.cache/tastemaker/<name>/``); a download when asked for and the publisher has a URL; the
copy bundled with the package. When none holds the files it raises
:class:`~tastemaker.errors.MissingDataError` saying which file it expected, where it looked and
how to fix it.
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import os
import urllib.error
import urllib.request
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from tastemaker.errors import DataError, MissingDataError

BUNDLED = Path(__file__).resolve().parents[2] / "bundled"
Pattern = str | tuple[str, ...]


@dataclass(frozen=True)
class Remote:
    """A publisher's download URL and the archive's sha256 (None where no official checksum is
    known: the download is then kept with a warning instead of verified)."""

    url: str
    sha256: str | None = None

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Member:
    """One file of a :class:`FileSet`: a file on disk, or a member of a .zip archive on disk."""

    location: Path
    inner: str | None = None

    @property
    def parts(self) -> tuple[str, ...]:
        """Path components used for matching, with a final ``.gz`` removed."""
        parts = PurePosixPath(self.inner).parts if self.inner else (self.location.name,)
        return (*parts[:-1], parts[-1].removesuffix(".gz"))

    @property
    def label(self) -> str:
        """How error messages name the file: ``/data/ml-100k.zip:ml-100k/u.data``."""
        return f"{self.location}:{self.inner}" if self.inner else str(self.location)

    def read_bytes(self) -> bytes:
        """The file's bytes, decompressed when its name ends in ``.gz``."""
        if self.inner is None:
            data = self.location.read_bytes()
        else:
            with zipfile.ZipFile(self.location) as archive:
                data = archive.read(self.inner)
        name = self.inner or self.location.name
        if name.endswith(".gz"):
            try:
                data = gzip.decompress(data)
            except (OSError, EOFError) as exc:
                raise DataError(f"not a valid gzip file ({exc})", file=self.label) from exc
        return data


class FileSet:
    """The files under a directory (with the members of its .zip archives), in one .zip
    archive, or beside a single file. A single file given directly is its set's ``chosen``
    member: a loader reads it as the main file of the format, whatever its name."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()
        self.chosen: Member | None = None
        if self.root.is_file() and not zipfile.is_zipfile(self.root):
            self.chosen = Member(self.root)
        self._members: list[Member] | None = None

    @property
    def members(self) -> list[Member]:
        if self._members is None:
            self._members = sorted(self._scan(), key=lambda m: (len(m.parts), m.label))
        return self._members

    def _scan(self) -> list[Member]:
        if self.chosen is not None:
            return [self.chosen] + [m for m in _directory(self.root.parent, depth=0) if m != self.chosen]
        if self.root.is_dir():
            return _directory(self.root, depth=3)
        if self.root.is_file():
            return _archive(self.root)
        return []

    def find(self, pattern: Pattern) -> Member | None:
        """The first member matching ``pattern``: a file name or a trailing part of a path
        (``random/men/men.csv``), with shell wildcards, where ``x`` also matches ``x.gz``.
        A tuple gives alternatives, tried in order (``("ratings.dat", "ratings*.dat")``)."""
        for alternative in (pattern,) if isinstance(pattern, str) else pattern:
            wanted = PurePosixPath(alternative).parts
            for member in self.members:
                tail = member.parts[-len(wanted) :]
                if len(tail) == len(wanted) and all(map(fnmatch.fnmatchcase, tail, wanted)):
                    return member
        return None

    def get(self, pattern: Pattern, *, main: bool = False) -> Member:
        """Like :meth:`find`, but a missing file raises MissingDataError. ``main=True`` returns
        the ``chosen`` file when the set was made from one."""
        if main and self.chosen is not None:
            return self.chosen
        member = self.find(pattern)
        if member is None:
            raise MissingDataError(f"{self.root}: no file matching {_describe(pattern)} here")
        return member

    def has(self, patterns: Sequence[Pattern]) -> bool:
        """Whether every pattern matches; a ``chosen`` file stands for the first (the main file)."""
        rest = patterns[1:] if self.chosen is not None else patterns
        return all(self.find(p) is not None for p in rest)


def _describe(pattern: Pattern) -> str:
    return " or ".join(repr(p) for p in ((pattern,) if isinstance(pattern, str) else pattern))


def _directory(folder: Path, depth: int) -> list[Member]:
    found: list[Member] = []
    for entry in sorted(folder.iterdir()):
        if entry.is_dir() and depth > 0:
            found += _directory(entry, depth - 1)
        elif entry.is_file():
            found.append(Member(entry))
            if entry.suffix == ".zip" and zipfile.is_zipfile(entry):
                found += _archive(entry)
    return found


def _archive(path: Path) -> list[Member]:
    try:
        with zipfile.ZipFile(path) as archive:
            return [Member(path, info.filename) for info in archive.infolist() if not info.is_dir()]
    except zipfile.BadZipFile as exc:
        raise DataError(f"not a valid zip archive ({exc})", file=str(path)) from exc


# ---------------------------------------------------------------------------------- locating
def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The download cache: ``cache_dir``, else ``$TASTEMAKER_CACHE``, else ``~/.cache/tastemaker``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    return Path(os.environ.get("TASTEMAKER_CACHE") or "~/.cache/tastemaker").expanduser()


def locate(
    name: str,
    path: str | Path | None,
    expects: Sequence[Pattern],
    *,
    download: bool = False,
    cache_dir: str | Path | None = None,
    remote: Remote | None = None,
    bundled: Path | None = None,
) -> FileSet:
    """Find the place holding every file in ``expects`` (patterns as for :meth:`FileSet.find`;
    the first names the main file, which a single file given as ``path`` stands for).

    An explicit ``path`` is the only place looked at. Otherwise the order is
    ``$TASTEMAKER_DATA/<name>``, the cache, a download (``download=True`` and a ``remote``),
    then ``bundled``.
    """
    looked: list[str] = []
    if path is not None:
        files = FileSet(path)
        if files.root.exists() and files.has(expects):
            return files
        looked.append(f"path={files.root}: " + ("lacks it" if files.root.exists() else "does not exist"))
        raise MissingDataError(_missing_message(name, expects, looked, remote, explicit=True))
    env = os.environ.get("TASTEMAKER_DATA")
    candidates = [("$TASTEMAKER_DATA", Path(env).expanduser() / name)] if env else []
    if not env:
        looked.append("$TASTEMAKER_DATA: not set")
    candidates.append(("the download cache", cache_root(cache_dir) / name))
    for label, folder in candidates:
        files = FileSet(folder)
        if folder.is_dir() and files.has(expects):
            return files
        looked.append(f"{label} {folder}: " + ("lacks it" if folder.is_dir() else "does not exist"))
    if remote is not None and download:
        folder = cache_root(cache_dir) / name
        fetch(remote.url, remote.sha256, folder / remote.filename)
        files = FileSet(folder)
        if files.has(expects):
            return files
        looked.append(f"the download {remote.url}: lacks it")
    elif remote is not None:
        looked.append(f"download: not requested (download=True fetches {remote.url})")
    else:
        looked.append("download: the publisher has no download URL known to tastemaker")
    if bundled is not None:
        files = FileSet(bundled)
        if files.has(expects):
            return files
        looked.append(f"the bundled copy {bundled}: lacks it")
    raise MissingDataError(_missing_message(name, expects, looked, remote, explicit=False))


def _missing_message(
    name: str, expects: Sequence[Pattern], looked: list[str], remote: Remote | None, *, explicit: bool
) -> str:
    files = ", ".join(_describe(p) for p in expects)
    fixes = [
        f"set TASTEMAKER_DATA to a folder holding {name}/ with these files",
        "pass path= (a directory, a .zip archive or the file itself)",
    ]
    if remote is not None:
        fixes.append(f"pass download=True to fetch {remote.url}")
    where = "\n".join(f"  - {place}" for place in looked)
    note = "" if not explicit else "\n(an explicit path is the only place looked at)"
    return (
        f"{name}: expected the file(s) {files} (plain, .gz, or inside a .zip archive).\n"
        f"Looked in:\n{where}{note}\nTo fix: " + "; or ".join(fixes) + "."
    )


# ---------------------------------------------------------------------------------- download
def fetch(url: str, sha256: str | None, dest: str | Path, *, progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` with a progress bar and check its sha256.

    The bytes go to ``dest + ".part"`` and are renamed into place only once complete and
    verified; on a checksum mismatch the download is deleted and DataError raised. With
    ``sha256=None`` (no official checksum known) the file is kept and a warning gives the
    checksum it has. A failed connection raises MissingDataError naming the URL.
    """
    dest = Path(dest).expanduser()
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, partial.open("wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError) as exc:
        partial.unlink(missing_ok=True)
        raise MissingDataError(f"could not download {url}: {getattr(exc, 'reason', exc)}") from exc
    actual = digest.hexdigest()
    if sha256 is None:
        warnings.warn(
            f"{url}: no official sha256 is known, so the download is unverified (its sha256 is {actual})", stacklevel=2
        )
    elif actual != sha256.lower():
        partial.unlink()
        raise DataError(
            f"checksum mismatch: expected sha256 {sha256}, got {actual}; the download was deleted", file=url
        )
    partial.replace(dest)
    return dest
