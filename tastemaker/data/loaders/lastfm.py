"""HetRec 2011 Last.fm 2K (``hetrec2011-lastfm-2k.zip``): listening counts, friends, tags.

Tab-separated files with a header row; CRLF and LF line ends are both accepted (the shared copy
mixes them):

* ``user_artists.dat`` (``userID artistID weight``): one interaction per pair with
  ``event_type="play"`` and ``value`` = the listening count. There is no time, so
  ``timestamp`` is the pair's position among the user's rows (file order).
* ``user_friends.dat`` (``userID friendID``): the social edges, as listed (the file holds each
  friendship in both directions).
* ``artists.dat`` (``id name url pictureURL``, UTF-8): the catalog, ``title`` = the name, plus
  ``url`` and ``picture_url``.
* ``tags.dat`` (``tagID tagValue``, ISO-8859-1) with ``user_taggedartists.dat`` (``userID
  artistID tagID day month year``): an artist's ``categories`` are the tags users gave it, most
  used first (ties: lower tagID first). Tag assignments of artists missing from artists.dat
  are ignored.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tastemaker.data.dataset import Dataset
from tastemaker.data.loaders._files import Remote, locate
from tastemaker.data.validate import Field, OnError, RowErrors, read_delimited

REMOTE = Remote("https://files.grouplens.org/datasets/hetrec2011/hetrec2011-lastfm-2k.zip")  # no official sha256
_NAME = "hetrec2011-lastfm-2k"


def load_lastfm_2k(
    path: str | Path | None = None,
    *,
    on_error: OnError = "raise",
    download: bool = False,
    cache_dir: str | Path | None = None,
) -> Dataset:
    """HetRec 2011 Last.fm: 1,892 users, 17,632 artists, 92,834 play counts (module doc)."""
    expects = ["user_artists.dat", "artists.dat", "user_friends.dat", "tags.dat", "user_taggedartists.dat"]
    files = locate(_NAME, path, expects, download=download, cache_dir=cache_dir, remote=REMOTE)
    errors = RowErrors(on_error)

    def read(pattern: str, fields: list[Field], encoding: str = "utf-8") -> pd.DataFrame:
        member = files.get(pattern, main=pattern == expects[0])
        return read_delimited(member, fields, errors=errors, sep="\t", header=True, encoding=encoding)

    plays = read("user_artists.dat", [Field("userID", "id"), Field("artistID", "id"), Field("weight", "float")])
    plays = plays.rename(columns={"userID": "user", "artistID": "item", "weight": "value"})[["user", "item", "value"]]
    artists = read("artists.dat", [Field("id", "id"), Field("name"), Field("url"), Field("pictureURL")])
    friends = read("user_friends.dat", [Field("userID", "id"), Field("friendID", "id")])
    tags = read("tags.dat", [Field("tagID", "id"), Field("tagValue")], encoding="latin-1")
    tagged = read("user_taggedartists.dat", [Field("userID", "id"), Field("artistID", "id"), Field("tagID", "id")])

    counts = tagged.groupby(["artistID", "tagID"], sort=False).size().rename("n").reset_index()
    counts = counts.merge(tags[["tagID", "tagValue"]], on="tagID", how="inner")
    counts["tag_number"] = pd.to_numeric(counts["tagID"], errors="coerce")
    counts = counts.sort_values(["artistID", "n", "tag_number"], ascending=[True, False, True], kind="stable")
    categories = counts.groupby("artistID", sort=False)["tagValue"].agg(list)
    catalog = pd.DataFrame(
        {
            "item_id": artists["id"],
            "title": artists["name"].str.strip(),
            "categories": [categories.get(a, []) for a in artists["id"].tolist()],
            "url": artists["url"],
            "picture_url": artists["pictureURL"],
        }
    )
    social = friends.rename(columns={"userID": "user", "friendID": "friend"})[["user", "friend"]]
    return Dataset.from_frames(
        plays, catalog, social=social, name=_NAME, event_type="play", extras=errors.extras(_NAME)
    )
