from services.user_service.models import SCHEMA, metadata
from shared.migrations import run_migrations

run_migrations(metadata, SCHEMA)
