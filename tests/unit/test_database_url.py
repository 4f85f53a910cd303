"""`DATABASE_URL` with several hosts, spelled for asyncpg and for SQLAlchemy
(shared/database_url.py); `REDIS_URL` through Sentinel (shared/redis.py)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.database_url import asyncpg_dsn, parse_database_url, sqlalchemy_url
from shared.redis_url import parse_sentinel_url
from shared.settings import Settings

SEVERAL = (
    "postgresql+asyncpg://app:p%40ss@db-a:5432,db-b:5433,db-c/notifications"
    "?target_session_attrs=read-write"
)


def test_asyncpg_gets_the_libpq_url_with_every_host() -> None:
    assert asyncpg_dsn(SEVERAL) == (
        "postgresql://app:p%40ss@db-a:5432,db-b:5433,db-c:5432/notifications"
        "?target_session_attrs=read-write"
    )


def test_sqlalchemy_gets_the_hosts_as_query_parameters() -> None:
    url = sqlalchemy_url(SEVERAL)
    assert url.drivername == "postgresql+asyncpg"
    assert (url.username, url.password, url.host, url.database) == (
        "app",
        "p@ss",
        None,
        "notifications",
    )
    assert url.query == {
        "host": ("db-a:5432", "db-b:5433", "db-c:5432"),
        "target_session_attrs": "read-write",
    }


def test_the_dialect_connects_to_every_host_with_the_session_attrs() -> None:
    from sqlalchemy.dialects.postgresql.asyncpg import dialect

    _, options = dialect().create_connect_args(sqlalchemy_url(SEVERAL))
    assert options["host"] == ["db-a", "db-b", "db-c"]
    assert options["port"] == [5432, 5433, 5432]
    assert options["target_session_attrs"] == "read-write"


def test_one_host_is_left_as_it_is() -> None:
    single = "postgresql+asyncpg://postgres@127.0.0.1:5432/notifications"
    assert sqlalchemy_url(single).render_as_string(hide_password=False) == single
    assert asyncpg_dsn(single) == "postgresql://postgres@127.0.0.1:5432/notifications"
    assert parse_database_url("postgresql://u@[::1]/db").hosts == (("[::1]", 5432),)


@pytest.mark.parametrize(
    "url",
    [
        "mysql://u@h/db",
        "postgresql+asyncpg://u:secret-pw@h1:5432,h2:x/db",
        "postgresql+asyncpg://u:secret-pw@h1,,h2/db",
        "postgresql+asyncpg://u:secret-pw@h1/",
        "postgresql+asyncpg://u:secret-pw@/db?host=h1:5432&host=h2:5432",
    ],
)
def test_settings_refuse_a_url_that_is_not_libpq_s_form_without_echoing_it(url: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(_env_file=None, database_url=url)
    assert "database_url" in str(refused.value)
    assert "secret-pw" not in str(refused.value.errors(include_input=False))


def test_sentinel_urls() -> None:
    parsed = parse_sentinel_url("redis+sentinel://:p%40w@s1:26379,s2/mymaster/3")
    assert parsed.sentinels == (("s1", 26379), ("s2", 26379))
    assert (parsed.master, parsed.db, parsed.password) == ("mymaster", 3, "p@w")
    assert parse_sentinel_url("redis+sentinel://s1/m").db == 0
    for bad in ("redis+sentinel://s1/", "redis+sentinel://s1/m/x", "redis+sentinel://s1:x/m"):
        with pytest.raises(ValueError):
            parse_sentinel_url(bad)
        with pytest.raises(ValidationError) as refused:
            Settings(_env_file=None, redis_url=bad.replace("://", "://:secret-pw@"))
        assert "redis_url" in str(refused.value)
        assert "secret-pw" not in str(refused.value.errors(include_input=False))
