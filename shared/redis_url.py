"""`REDIS_URL` through Sentinel: `redis+sentinel://[:password@]host1:26379,host2:26379/MASTER[/DB]`.

Read here, apart from the client factory (`shared/redis.py`), so the settings can refuse a
malformed one at start with a clear message.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

SENTINEL_SCHEME = "redis+sentinel"
DEFAULT_SENTINEL_PORT = 26379


@dataclass(frozen=True)
class SentinelUrl:
    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int
    password: str | None


def parse_sentinel_url(url: str) -> SentinelUrl:
    """Read `redis+sentinel://[:password@]h1:p1,h2:p2/MASTER[/DB]`; `ValueError` otherwise (the
    message never repeats the URL, which may hold a password)."""
    parts = urlsplit(url)
    if parts.scheme != SENTINEL_SCHEME:
        raise ValueError(f"not a {SENTINEL_SCHEME}:// URL")
    userinfo, _, host_list = parts.netloc.rpartition("@")
    password = unquote(userinfo.partition(":")[2]) or None
    sentinels = []
    for entry in host_list.split(","):
        host, _, port = entry.rpartition(":") if ":" in entry else (entry, "", "")
        if not host or (port and not port.isdigit()):
            raise ValueError("each sentinel must be host or host:port")
        sentinels.append((host, int(port) if port else DEFAULT_SENTINEL_PORT))
    path = [p for p in parts.path.split("/") if p]
    if not 1 <= len(path) <= 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ValueError("the path must be /MASTER_NAME or /MASTER_NAME/DB")
    return SentinelUrl(tuple(sentinels), path[0], int(path[1]) if len(path) == 2 else 0, password)
