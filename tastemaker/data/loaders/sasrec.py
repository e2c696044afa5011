"""The SASRec input format (Kang & McAuley, ICDM 2018): ``user item`` per line.

Space-separated, no header; a user's lines are in interaction order. There are no timestamps,
so ``timestamp`` is each event's position in its user's sequence (0, 1, 2, ...), with
``event_type="interaction"`` and ``value=1``. A line without exactly two fields is a bad row.
The catalog is empty (items get empty titles).

``sasrec-video-games`` is SASRec's ``Video.txt`` (Amazon Video Games, 2014 reviews).
"""

from __future__ import annotations

from pathlib import Path

from tastemaker.data.dataset import Dataset
from tastemaker.data.loaders._files import Member, locate
from tastemaker.data.validate import Field, OnError, RowErrors, read_delimited
from tastemaker.errors import MissingDataError


def load_sasrec_lines(path: str | Path | Member, *, on_error: OnError = "raise", name: str | None = None) -> Dataset:
    """Any file (plain or .gz) in the SASRec ``user item`` format."""
    if not isinstance(path, Member):
        if not Path(path).is_file():
            raise MissingDataError(f"{path}: no such file (expected a SASRec 'user item' file)")
        path = Member(Path(path))
    member = path
    errors = RowErrors(on_error)
    pairs = read_delimited(member, [Field("user", "id"), Field("item", "id")], errors=errors, sep=" ")
    name = name or member.parts[-1].removesuffix(".txt")
    return Dataset.from_frames(pairs[["user", "item"]], name=name, extras=errors.extras(name))


def load_sasrec_video_games(
    path: str | Path | None = None,
    *,
    on_error: OnError = "raise",
    download: bool = False,
    cache_dir: str | Path | None = None,
) -> Dataset:
    """SASRec's Amazon Video Games file, ``Video.txt``: 287,107 lines, 31,013 users."""
    files = locate("sasrec-video-games", path, ["Video.txt"], download=download, cache_dir=cache_dir)
    return load_sasrec_lines(files.get("Video.txt", main=True), on_error=on_error, name="sasrec-video-games")
