"""Files the development stack generates once (keys, service accounts) and then shares.

Several processes may start at the same moment and each find the file missing; the content is
written to a temporary file and hard-linked into place, which fails if the file already exists,
so every racer ends up reading the one that won.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_once(path: Path, content: bytes) -> Path:
    """Create `path` with `content` (mode 0600) unless it exists; never overwrite it."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
    return path
