"""The one locale rule: which language tags a user may hold and a template may be saved in.

The user service, the template service and the gateway all validate and normalise locales with
these functions, so a locale one of them accepts is never refused by another. (When the user
service accepted `abcde` and the template service refused it, every send to that user failed
at the template lookup.)

The rule is the common subset of BCP 47 (RFC 5646): a language of 2-3 letters (or a registered
one of 5-8), an optional script, an optional region, and variants. `_` is read as `-`, and the
result has BCP 47's canonical case (`pt_br` -> `pt-BR`, `zh-hant-tw` -> `zh-Hant-TW`).
Extensions, private-use and grandfathered tags are refused.
"""

from __future__ import annotations

import re

MAX_LOCALE_LENGTH = 35

_BCP47 = re.compile(
    r"^(?P<lang>[A-Za-z]{2,3}|[A-Za-z]{5,8})"
    r"(?:-(?P<script>[A-Za-z]{4}))?"
    r"(?:-(?P<region>[A-Za-z]{2}|[0-9]{3}))?"
    r"(?P<variants>(?:-(?:[A-Za-z0-9]{5,8}|[0-9][A-Za-z0-9]{3}))*)"
)

INVALID_LOCALE = "must be a BCP 47 language tag such as 'en' or 'pt-BR'"


def normalize_locale(value: str) -> str:
    """The tag in canonical case; `ValueError` (with a message for the caller) if invalid."""
    match = _BCP47.fullmatch(value.replace("_", "-")) if len(value) <= MAX_LOCALE_LENGTH else None
    if match is None:
        raise ValueError(INVALID_LOCALE)
    parts = [match["lang"].lower()]
    if match["script"]:
        parts.append(match["script"].title())
    if match["region"]:
        parts.append(match["region"].upper())
    if match["variants"]:
        parts.append(match["variants"][1:].lower())
    return "-".join(parts)


def locale_chain(locale: str | None, default: str) -> list[str]:
    """The locales to try, most specific first: `pt-BR` -> `pt` -> the default locale."""
    chain: list[str] = []
    if locale:
        parts = normalize_locale(locale).split("-")
        chain = ["-".join(parts[:n]) for n in range(len(parts), 0, -1)]
    default = normalize_locale(default)
    if default not in chain:
        chain.append(default)
    return chain
