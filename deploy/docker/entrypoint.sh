#!/bin/sh
# Starts what $SERVICE names. Extra arguments replace it (e.g. `docker run IMAGE python -V`).
set -eu

if [ "$#" -gt 0 ]; then
    exec "$@"
fi

case "${SERVICE:-}" in
    api_gateway | user_service | template_service | email_service | push_service)
        exec python -m "services.${SERVICE}"
        ;;
    fcm_standin | smtp_inbox)
        exec python -m "shared.devtools.${SERVICE}"
        ;;
    migrate)
        exec python -m shared.migrate
        ;;
    migrate_and_seed)
        python -m shared.migrate
        exec python -m scripts.seed
        ;;
    *)
        echo "entrypoint: unknown SERVICE='${SERVICE:-}'; expected one of api_gateway," \
            "user_service, template_service, email_service, push_service, fcm_standin," \
            "smtp_inbox, migrate, migrate_and_seed" >&2
        exit 64
        ;;
esac
