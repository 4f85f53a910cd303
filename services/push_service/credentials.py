"""The FCM service account: where it comes from and how it is loaded.

Production names a real service-account JSON (`FCM_SERVICE_ACCOUNT_FILE`). Elsewhere, when
none is named, a dev account is generated once under `.run/` with a fresh RSA key and a
`token_uri` pointing at the local FCM stand-in; the stand-in trusts the same file, so
`make run` needs no Google account. The stand-in imports this module, never the reverse.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.files import write_once
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


class ServiceAccountMissing(RuntimeError):
    """Production needs a real service-account file; the dev key is never made there."""


def service_account_info(settings: Settings) -> dict[str, Any]:
    """The service-account JSON the FCM client signs with (the dev one made if needed)."""
    path = service_account_path(settings)
    if settings.environment == "production":
        if not settings.fcm_service_account_file or not path.exists():
            raise ServiceAccountMissing(
                "FCM_SERVICE_ACCOUNT_FILE must name a service-account JSON in production"
            )
    else:
        ensure_service_account_file(
            path,
            project_id=settings.fcm_project_id,
            token_uri=f"http://127.0.0.1:{settings.fcm_standin_port}/token",
        )
    return load_service_account(path)


def service_account_path(settings: Settings) -> Path:
    """The configured file, else the dev file of this stand-in port."""
    configured = settings.fcm_service_account_file
    return Path(configured) if configured else dev_service_account_path(settings)


def dev_service_account_path(settings: Settings) -> Path:
    """Where the dev stack keeps its generated service account.

    Named by the stand-in's port, so a test stack on a free port never picks up the file of a
    `make run` stack whose `token_uri` points elsewhere.
    """
    return ROOT / ".run" / f"fcm-service-account-{settings.fcm_standin_port}.json"


def make_service_account(*, project_id: str, token_uri: str) -> dict[str, str]:
    """A service-account JSON like Google's, with a fresh RSA key (never leaves this machine)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    email = f"firebase-adminsdk-dev@{project_id}.iam.gserviceaccount.com"
    return {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": secrets.token_hex(20),
        "private_key": pem,
        "client_email": email,
        "client_id": str(secrets.randbelow(10**20)),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": f"https://www.googleapis.com/robot/v1/metadata/x509/{email}",
        "universe_domain": "googleapis.com",
    }


def ensure_service_account_file(path: Path, *, project_id: str, token_uri: str) -> Path:
    """Create the file once, atomically; whoever starts first (stand-in or push service) wins."""
    if path.exists():
        return path
    account = make_service_account(project_id=project_id, token_uri=token_uri)
    return write_once(path, json.dumps(account).encode())


def load_service_account(path: str | Path) -> dict[str, str]:
    info: dict[str, str] = json.loads(Path(path).read_text())
    return info
