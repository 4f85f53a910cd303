"""`python -m notifications_client.cli`, the same as the `notify` command."""

import sys

from notifications_client.cli import main

sys.exit(main())
