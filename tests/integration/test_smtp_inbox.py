"""The local SMTP inbox: real SMTP in, Mailpit-shaped HTTP out, faults on demand."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import aiosmtplib
import httpx
import pytest

from devtools.smtp_inbox import SmtpInbox, create_inbox_app
from devtools.stack import ROOT, free_port
from tests.conftest import wait_for


@pytest.fixture
async def inbox() -> AsyncIterator[SmtpInbox]:
    async with SmtpInbox(port=free_port(), max_messages=3) as smtp:
        yield smtp


@pytest.fixture
async def api(inbox: SmtpInbox) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_inbox_app(inbox), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://inbox") as client:
        yield client


def multipart(subject: str, text: str = "hello", html: str = "<p>hello</p>") -> MIMEMultipart:
    message = MIMEMultipart("alternative")
    message["Subject"] = subject
    message["From"] = "Sender <sender@example.com>"
    message["To"] = "Ada <ada@example.com>"
    message["Message-ID"] = f"<{subject}@example.com>"
    message.attach(MIMEText(text, "plain", "utf-8"))
    message.attach(MIMEText(html, "html", "utf-8"))
    return message


async def send(inbox: SmtpInbox, message: MIMEMultipart, **kwargs: object) -> object:
    return await aiosmtplib.send(
        message, hostname="127.0.0.1", port=inbox.port, timeout=5, **kwargs
    )


async def test_received_mail_is_listed_and_readable_like_mailpit(
    inbox: SmtpInbox, api: httpx.AsyncClient
) -> None:
    await send(inbox, multipart("first", text="plain body ü", html="<b>rich body</b>"))
    listing = (await api.get("/api/v1/messages")).json()
    assert listing["total"] == 1 and listing["count"] == 1
    summary = listing["messages"][0]
    assert summary["Subject"] == "first"
    assert summary["MessageID"] == "first@example.com"
    assert summary["From"] == {"Name": "Sender", "Address": "sender@example.com"}
    assert summary["To"] == [{"Name": "Ada", "Address": "ada@example.com"}]
    assert summary["Snippet"] == "plain body ü"
    assert summary["Created"].endswith("Z")

    detail = (await api.get(f"/api/v1/message/{summary['ID']}")).json()
    assert detail["Text"].strip() == "plain body ü"
    assert detail["HTML"].strip() == "<b>rich body</b>"
    assert detail["Headers"]["Subject"] == ["first"]
    assert (await api.get("/api/v1/message/latest")).json()["ID"] == summary["ID"]
    headers = (await api.get(f"/api/v1/message/{summary['ID']}/headers")).json()
    assert headers["Message-ID"] == ["<first@example.com>"]
    assert "multipart/alternative" in (await api.get(f"/api/v1/message/{summary['ID']}/raw")).text

    missing = await api.get("/api/v1/message/nope")
    assert missing.status_code == 404 and missing.json()["error"] == "message_not_found"


async def test_the_inbox_is_bounded_newest_first_and_can_be_emptied(
    inbox: SmtpInbox, api: httpx.AsyncClient
) -> None:
    for n in range(5):
        await send(inbox, multipart(f"m{n}"))
    listing = (await api.get("/api/v1/messages")).json()
    assert [m["Subject"] for m in listing["messages"]] == ["m4", "m3", "m2"]
    assert (await api.get("/api/v1/messages", params={"start": 1, "limit": 1})).json()["messages"][
        0
    ]["Subject"] == "m3"
    assert (await api.delete("/api/v1/messages")).status_code == 200
    assert (await api.get("/api/v1/messages")).json()["total"] == 0


async def test_the_page_lists_the_inbox_with_content_escaped(
    inbox: SmtpInbox, api: httpx.AsyncClient
) -> None:
    await send(inbox, multipart("<script>alert(1)</script>"))
    page = await api.get("/")
    assert page.headers["content-type"].startswith("text/html")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "<script>" not in page.text
    health = (await api.get("/health")).json()
    assert health["success"] is True and health["data"]["messages"] == 1


async def test_faults_refuse_tempfail_and_permfail_until_cleared(
    inbox: SmtpInbox, api: httpx.AsyncClient
) -> None:
    async def set_fault(**body: object) -> httpx.Response:
        return await api.post("/api/control/faults", json=body)

    assert (await set_fault(mode="tempfail", code=421)).json()["data"]["mode"] == "tempfail"
    with pytest.raises(aiosmtplib.SMTPResponseException) as tempfail:
        await send(inbox, multipart("t"))
    assert tempfail.value.code == 421

    await set_fault(mode="permfail")
    with pytest.raises(aiosmtplib.SMTPResponseException) as permfail:
        await send(inbox, multipart("p"))
    assert permfail.value.code == 550

    await set_fault(mode="refuse")
    with pytest.raises(aiosmtplib.SMTPConnectError):
        await send(inbox, multipart("r"))

    bad = await set_fault(mode="tempfail", code=550)
    assert bad.status_code == 422 and bad.json()["error"] == "validation_error"
    assert (await set_fault(mode="sideways")).status_code == 422

    state = (await set_fault(mode="none")).json()["data"]
    assert state["applied"] == 2
    await send(inbox, multipart("after"))
    subjects = [m["Subject"] for m in (await api.get("/api/v1/messages")).json()["messages"]]
    assert subjects == ["after"]


async def test_refuse_cuts_open_sessions_too(inbox: SmtpInbox) -> None:
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=inbox.port, timeout=5)
    await client.connect()
    await inbox.set_fault("refuse")
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        await client.send_message(multipart("cut"))
    await inbox.set_fault("none")
    await send(inbox, multipart("back"))
    assert [m.subject for m in inbox.inbox.messages] == ["back"]


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_auth_is_required_when_configured() -> None:
    async with SmtpInbox(port=free_port(), auth=("mailer", "s3cret")) as smtp:
        with pytest.raises(aiosmtplib.SMTPException):
            await send(smtp, multipart("anonymous"))
        with pytest.raises(aiosmtplib.SMTPAuthenticationError):
            await send(smtp, multipart("wrong"), username="mailer", password="nope")
        await send(smtp, multipart("signed-in"), username="mailer", password="s3cret")
        assert [m.subject for m in smtp.inbox.messages] == ["signed-in"]


async def test_the_command_runs_both_servers_and_takes_a_starting_fault() -> None:
    smtp_port, http_port = free_port(), free_port()
    process = subprocess.Popen(  # noqa: ASYNC220 - started once, waited for below
        [
            sys.executable,
            "-m",
            "devtools.smtp_inbox",
            f"--smtp-port={smtp_port}",
            f"--http-port={http_port}",
            "--fail-with=421",
        ],
        cwd=ROOT,
        env={**os.environ, "LOG_FORMAT": "text"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}") as client:

            async def healthy() -> bool:
                try:
                    return (await client.get("/health")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_for(healthy, timeout=60)
            faults = (await client.get("/api/control/faults")).json()["data"]
            assert faults == {"mode": "tempfail", "code": 421, "applied": 0}
            with pytest.raises(aiosmtplib.SMTPResponseException):
                await aiosmtplib.send(
                    multipart("x"), hostname="127.0.0.1", port=smtp_port, timeout=5
                )
    finally:
        process.terminate()
        process.wait(10)
