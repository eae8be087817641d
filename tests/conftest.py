"""Shared test set-up: every module in tests/plugins/ is a fixture plugin."""

from pathlib import Path

pytest_plugins = sorted(
    f"tests.plugins.{path.stem}"
    for path in (Path(__file__).parent / "plugins").glob("*.py")
    if path.stem != "__init__"
)
