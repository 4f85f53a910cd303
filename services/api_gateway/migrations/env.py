import services.api_gateway.tables  # noqa: F401 - registers the gateway's tables on `metadata`
from shared.migrations import run_migrations
from shared.notification_status import SCHEMA, metadata

run_migrations(metadata, SCHEMA)
