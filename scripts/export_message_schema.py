"""Write `shared/schemas/notification_message.schema.json` from the pydantic model.

`python -m scripts.export_message_schema`; `tests/unit/test_message_schema.py` fails when the
committed file drifts from the model.
"""

from __future__ import annotations

import json
from pathlib import Path

from shared.messaging.message import NotificationMessage

SCHEMA_PATH = (
    Path(__file__).resolve().parent.parent
    / "shared"
    / "schemas"
    / "notification_message.schema.json"
)


def message_schema_text() -> str:
    schema = NotificationMessage.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://notifications.local/schemas/notification_message.schema.json"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    SCHEMA_PATH.write_text(message_schema_text())
    print(f"wrote {SCHEMA_PATH}")
