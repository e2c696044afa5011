"""FilmTrust (Guo, Zhang and Yorke-Smith, IJCAI 2013; ``filmtrust.zip``): movie ratings and a
directed trust network, crawled from the FilmTrust website.

Whitespace-separated files without a header:

* ``ratings.txt`` (``user item rating``; 0.5 to 4.0 stars in steps of 0.5): one interaction
  per row with ``event_type="rating"`` and ``value`` = the stars. There is no time, so
  ``timestamp`` is the row's position among the user's rows (file order).
* ``trust.txt`` (``trustor trustee value``; every value is 1): the social edges, directed
  (``Dataset.social``: ``user`` trusts ``friend``). Users who appear only here (they trust or
  are trusted but rated nothing) are kept as users without interactions, so a trust path
  through them stays a path.

There is no catalog beyond the item ids (titles are empty).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tastemaker.data.dataset import Dataset
from tastemaker.data.loaders._files import locate
from tastemaker.data.validate import Field, OnError, RowErrors, read_delimited

_NAME = "filmtrust"


def load_filmtrust(
    path: str | Path | None = None,
    *,
    on_error: OnError = "raise",
    download: bool = False,
    cache_dir: str | Path | None = None,
) -> Dataset:
    """FilmTrust: 35,497 ratings by 1,508 users of 2,071 movies, 1,853 trust edges (module doc).
    The publisher has no download URL known to tastemaker (``download`` is accepted for a
    uniform signature and finds nothing to fetch)."""
    expects = ["ratings.txt", "trust.txt"]
    files = locate(_NAME, path, expects, download=download, cache_dir=cache_dir)
    errors = RowErrors(on_error)
    ratings = read_delimited(files.get("ratings.txt", main=True),
                             [Field("user", "id"), Field("item", "id"), Field("value", "float")], errors=errors, sep=" ")
    trust = read_delimited(files.get("trust.txt"), [Field("user", "id"), Field("friend", "id"), Field("trust", "float")],
                           errors=errors, sep=" ")
    rated = set(ratings["user"].tolist())
    only_trust = [u for u in pd.unique(np.concatenate([trust["user"].to_numpy(), trust["friend"].to_numpy()])) if u not in rated]
    users = pd.DataFrame({"user_id": pd.Series(only_trust, dtype=object)})
    return Dataset.from_frames(ratings, users=users, social=trust[["user", "friend"]], name=_NAME, event_type="rating",
                               extras=errors.extras(_NAME))
