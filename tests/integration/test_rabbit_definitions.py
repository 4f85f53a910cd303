"""`deploy/rabbitmq/definitions.json` is exactly what `shared/messaging/topology.py` declares.

Both directions run against the real broker, each in a vhost of its own: what the services
declare, exported by RabbitMQ, equals the file; and a broker loaded from the file lets the
services declare their topology on top (any differing argument would be PRECONDITION_FAILED).
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from shared.messaging.topology import declare_topology
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEFINITIONS = ROOT / "deploy" / "rabbitmq" / "definitions.json"

# The fields that make two declarations equal (the export adds bookkeeping such as "type").
KEYS = {
    "exchanges": ("name", "type", "durable", "auto_delete", "arguments"),
    "queues": ("name", "durable", "auto_delete", "arguments"),
    "bindings": ("source", "destination", "destination_type", "routing_key", "arguments"),
}


def _ctl(*args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        ["rabbitmqctl", "-q", *args],
        input=stdin,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.stdout


@pytest.fixture
def vhost() -> Iterator[str]:
    name = f"defs_test_{uuid.uuid4().hex[:10]}"
    _ctl("add_vhost", name)
    _ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    try:
        yield name
    finally:
        _ctl("delete_vhost", name)


def _canonical(definitions: dict[str, Any], vhost: str | None = None) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for kind, keys in KEYS.items():
        items = [i for i in definitions[kind] if vhost is None or i["vhost"] == vhost]
        out[kind] = {json.dumps({k: i.get(k) for k in keys}, sort_keys=True) for i in items}
    return out


def _exported() -> dict[str, Any]:
    exported: dict[str, Any] = json.loads(_ctl("export_definitions", "-"))
    return exported


async def _declare(vhost: str) -> None:
    connection = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:5672/{vhost}", timeout=5)
    try:
        channel = await connection.channel()
        await declare_topology(channel, Settings(_env_file=None).retry_delay_levels_ms)
    finally:
        await connection.close()


def _file() -> dict[str, Any]:
    definitions: dict[str, Any] = json.loads(DEFINITIONS.read_text())
    return definitions


async def test_definitions_equal_what_the_services_declare(vhost: str) -> None:
    await _declare(vhost)
    assert _canonical(_exported(), vhost) == _canonical(_file())


async def test_services_declare_cleanly_on_a_broker_loaded_from_definitions(vhost: str) -> None:
    definitions = _file()
    definitions["vhosts"] = [{"name": vhost}]
    for kind in ("exchanges", "queues", "bindings", "policies"):
        for item in definitions[kind]:
            item["vhost"] = vhost
    _ctl("import_definitions", stdin=json.dumps(definitions))

    await _declare(vhost)  # raises PRECONDITION_FAILED on any differing argument

    exported = _exported()
    assert _canonical(exported, vhost) == _canonical(_file())
    policies = {p["name"] for p in exported["policies"] if p["vhost"] == vhost}
    assert policies == {p["name"] for p in _file()["policies"]}
