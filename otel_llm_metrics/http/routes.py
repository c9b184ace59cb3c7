"""``http.route`` from what the framework's router left in the scope: a template, never a raw path.

Starlette and FastAPI (>= Starlette 0.4x) put the matched route object in ``scope["route"]``.
A route under a ``Mount`` sees only its own template, and the mount's part of the path is in
``root_path`` as the raw matched text, so it is used only when it equals a static mount path of
the app; otherwise it becomes ``/{mount}`` and a client cannot grow the series count.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

_TEMPLATE_CACHE: dict[int, tuple[Any, str]] = {}  # id(route) -> (route, template); routes are unhashable
_STATIC_MOUNTS: dict[int, frozenset[str]] = {}
_CACHE_LIMIT = 10_000


def route_template(scope: dict, root_path_at_start: str) -> str | None:
    """The route template of the matched route, or None when no route matched."""
    route = scope.get("route")
    if route is None:
        return None
    cached = _TEMPLATE_CACHE.get(id(route))
    if cached is not None and cached[0] is route:
        template = cached[1]
    else:
        template = getattr(route, "path_format", None) or getattr(route, "path", None)
        if not isinstance(template, str):
            return None
        if len(_TEMPLATE_CACHE) < _CACHE_LIMIT:
            _TEMPLATE_CACHE[id(route)] = (route, template)
    root_path = scope.get("root_path", "")
    if len(root_path) > len(root_path_at_start):
        prefix = root_path[len(root_path_at_start):]
        template = (prefix if prefix in _static_mounts(scope.get("app")) else "/{mount}") + template
    return template


def _static_mounts(app: Any) -> frozenset[str]:
    """Full paths of the app's mounts that have no parameters, computed once per app."""
    if app is None:
        return frozenset()
    found = _STATIC_MOUNTS.get(id(app))
    if found is None:
        found = frozenset(_walk_mounts(getattr(app, "routes", ()), ""))
        _STATIC_MOUNTS[id(app)] = found
    return found


def _walk_mounts(routes: Iterable[Any], prefix: str) -> Iterable[str]:
    for route in routes:
        path = getattr(route, "path", None)
        inner = getattr(route, "routes", None)
        if not isinstance(path, str) or inner is None or "{" in path:
            continue
        full = prefix + path
        yield full
        yield from _walk_mounts(inner, full)
