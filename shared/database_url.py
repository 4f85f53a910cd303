"""`DATABASE_URL`, read once and spelled for each client that connects with it.

The one documented form is libpq's, with SQLAlchemy's driver name:

    postgresql+asyncpg://user:password@host1:5432,host2:5432/notifications?target_session_attrs=read-write

Several hosts are tried in order; `target_session_attrs=read-write` makes a client skip a
server that is a standby, so after a failover every new connection finds the new primary.
Two clients read it, and they spell several hosts differently:

- asyncpg (the hot-path pools, migrations' database check, the CLI tools) takes the libpq URL
  as it is, once the `+asyncpg` driver name is dropped;
- SQLAlchemy's asyncpg dialect cannot parse a host list in the authority (it reads
  `5432,host2` as a port) and wants `?host=host1:5432&host=host2:5432` instead, every port
  given. Other query parameters (`target_session_attrs`) go through to `asyncpg.connect`.

So nothing else in the code parses the URL: it calls `asyncpg_dsn` or `sqlalchemy_url`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from urllib.parse import parse_qsl, urlencode, urlsplit

from sqlalchemy.engine import URL, make_url

DEFAULT_PORT = 5432
SCHEMES = ("postgresql", "postgres")


@dataclass(frozen=True)
class DatabaseUrl:
    """The parts of a PostgreSQL URL that a client's spelling changes; the rest is kept verbatim
    (user information and query stay percent-encoded as given)."""

    driver: str  # "postgresql+asyncpg", "postgresql", ...
    userinfo: str  # "user:password" (still encoded) or ""
    hosts: tuple[tuple[str, int], ...]  # (host, port); a host in brackets for IPv6
    database: str
    query: tuple[tuple[str, str], ...]

    @property
    def several_hosts(self) -> bool:
        return len(self.hosts) > 1

    def with_database(self, database: str) -> DatabaseUrl:
        return replace(self, database=database)

    def _authority(self, hosts: str) -> str:
        return f"{self.userinfo}@{hosts}" if self.userinfo else hosts

    def _query(self, extra: list[tuple[str, str]]) -> str:
        pairs = [*extra, *self.query]
        return f"?{urlencode(pairs, safe=':/,[]')}" if pairs else ""

    def libpq(self) -> str:
        """The plain libpq URL asyncpg reads (every host in the authority)."""
        hosts = ",".join(f"{host}:{port}" for host, port in self.hosts)
        scheme = self.driver.split("+", 1)[0]
        return f"{scheme}://{self._authority(hosts)}/{self.database}{self._query([])}"

    def sqlalchemy(self) -> URL:
        """The URL SQLAlchemy's asyncpg dialect reads: one host in the authority, several as
        `host=` query parameters."""
        if not self.several_hosts:
            ((host, port),) = self.hosts
            authority = self._authority(f"{host}:{port}")
            return make_url(f"{self.driver}://{authority}/{self.database}{self._query([])}")
        hosts = [("host", f"{host}:{port}") for host, port in self.hosts]
        authority = self._authority("")
        return make_url(f"{self.driver}://{authority}/{self.database}{self._query(hosts)}")


def parse_database_url(url: str) -> DatabaseUrl:
    """Read a PostgreSQL URL in libpq's form; `ValueError` (never echoing the URL, which holds
    a password) when it is not one."""
    parts = urlsplit(url)
    if parts.scheme.split("+", 1)[0] not in SCHEMES:
        raise ValueError("must be a postgresql:// (or postgresql+asyncpg://) URL")
    userinfo, _, host_list = parts.netloc.rpartition("@")
    query = tuple(parse_qsl(parts.query, keep_blank_values=True))
    if any(name == "host" for name, _ in query):
        raise ValueError("give several hosts as host1:port1,host2:port2, not as ?host=")
    hosts = tuple(_host_and_port(entry) for entry in host_list.split(","))
    database = parts.path.removeprefix("/")
    if not database:
        raise ValueError("names no database (…/dbname)")
    return DatabaseUrl(parts.scheme, userinfo, hosts, database, query)


def _host_and_port(entry: str) -> tuple[str, int]:
    if entry.startswith("["):  # [::1]:5432
        host, _, rest = entry.partition("]")
        host, port = host + "]", rest.removeprefix(":")
    else:
        host, _, port = entry.partition(":")
    if not host or host == "]":
        raise ValueError("has an empty host")
    if not port:
        return host, DEFAULT_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("has a port that is not a number from 1 to 65535")
    return host, int(port)


def asyncpg_dsn(database_url: str) -> str:
    """`DATABASE_URL` as the libpq URL asyncpg reads (several hosts kept)."""
    return parse_database_url(database_url).libpq()


def sqlalchemy_url(database_url: str) -> URL:
    """`DATABASE_URL` as the URL SQLAlchemy's asyncpg dialect reads (several hosts as `?host=`)."""
    return parse_database_url(database_url).sqlalchemy()
