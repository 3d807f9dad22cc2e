"""The voiceq Serve application: `serve run serve_app:app` (settings from the environment)
or `serve run serve_app:build_app environment=production`."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["app", "build_app", "compose"]


def __getattr__(name: str) -> Any:
    # Imported lazily: importing serve_app (its routes in tests, tools) should neither read the
    # environment nor pull Ray Serve in.
    if name not in __all__:
        raise AttributeError(name)
    builder = importlib.import_module("serve_app.builder")
    if name == "app":
        return builder.build_app({})
    if name in ("build_app", "compose"):
        return getattr(builder, name)
    raise AttributeError(name)
