from shared.migrations import run_migrations
from shared.notification_status import SCHEMA, metadata

run_migrations(metadata, SCHEMA)
