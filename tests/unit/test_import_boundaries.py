"""The rooms of the code and which way imports may point.

- `shared/` is what every service uses: it imports no service and no dev tool.
- A service imports `shared/` and its own package, never another service (they talk over HTTP
  and AMQP) and never `devtools/` (the stand-ins, the fault proxy and the stack launcher exist
  for development and tests only; they may import the real code, never the reverse).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "__init__.py").exists())


def _imports(path: Path) -> set[str]:
    """Top-level module names a file imports (absolute imports only; we use no relative ones)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _violations(folder: Path, forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for path in sorted(folder.rglob("*.py")):
        for module in _imports(path):
            if any(module == f or module.startswith(f + ".") for f in forbidden):
                bad.append(f"{path.relative_to(ROOT)} imports {module}")
    return bad


def test_shared_imports_no_service_and_no_devtools() -> None:
    assert _violations(ROOT / "shared", ("services", "devtools")) == []


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_imports_no_other_service_and_no_devtools(service: str) -> None:
    others = tuple(f"services.{s}" for s in SERVICES if s != service)
    assert _violations(ROOT / "services" / service, ("devtools", *others)) == []


def test_the_check_sees_an_import(tmp_path: Path) -> None:
    """The checker itself: a planted import is reported."""
    (tmp_path / "bad.py").write_text("from devtools.fcm_standin import create_app\n")
    assert _imports(tmp_path / "bad.py") == {"devtools.fcm_standin"}
