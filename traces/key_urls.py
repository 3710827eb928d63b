"""URLs of a run's steps by key, for the many rows of a window or an API page.

reverse() costs more than the rest of a rendered row (or a serialised API item), and
a run's step URLs differ only by the key: the run's prefix and suffix are reversed
once (per script prefix) and a plain key is put between them."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

from django.urls import NoReverseMatch, get_script_prefix, reverse

# A key of only these characters is in its URL as it is: quote() leaves them, and
# the path converter takes them.
PLAIN_KEY = re.compile(r"[A-Za-z0-9_.~:@/-]+")


@lru_cache(maxsize=256)
def _around_key(name: str, run_id: int, script_prefix: str) -> tuple[str, str]:
    prefix, _, suffix = reverse(name, args=[run_id, "KEY"]).rpartition("KEY")
    return prefix, suffix


def key_url(name: str, run_id: int, key: str) -> str:
    """reverse(name, args=[run_id, key]), or "" for a key no URL can carry."""
    if PLAIN_KEY.fullmatch(key):
        prefix, suffix = _around_key(name, run_id, get_script_prefix())
        return f"{prefix}{key}{suffix}"
    try:
        return reverse(name, args=[run_id, key])
    except NoReverseMatch:
        return ""


def key_urls(name: str, run_id: int) -> Callable[[str], str]:
    """key_url() for the keys of one run."""
    return lambda key: key_url(name, run_id, key)
