"""The HTTP function includes a resource's routes with the first request for them: every
route must be found in the module `routes.module_serving` names for its path."""

from __future__ import annotations

import importlib
import pkgutil
import re

import pytest

from mqless.transports.http import routes
from mqless.transports.http.routes import MODULES, module_serving


def _routes_of(module: str) -> list[tuple[str, str]]:
    """(method, path) of each route a routes module declares, `<name>` given a value."""
    router = importlib.import_module(f"{routes.__name__}.{module}").router
    declared = []
    for key in router._routes:
        rule, methods = key[0], key[1]
        path = re.sub(r"<(\w+)>", r"\1-value", rule)
        for method in [methods] if isinstance(methods, str) else methods:
            declared.append((method, path))
    return declared


def test_every_routes_module_is_listed() -> None:
    # Given the modules of the routes package that declare a router
    found = {
        info.name
        for info in pkgutil.iter_modules(routes.__path__)
        if hasattr(importlib.import_module(f"{routes.__name__}.{info.name}"), "router")
    }
    # When the HTTP function lists the modules it may include
    # Then it lists each of them once
    assert sorted(MODULES) == sorted(found)
    assert len(set(MODULES)) == len(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_every_route_is_served_by_the_module_that_declares_it(module: str) -> None:
    # Given the routes a module declares
    declared = _routes_of(module)
    assert declared
    # When the HTTP function picks the module for each route's path
    serving = {path: module_serving(path) for _, path in declared}
    # Then it picks that module, so the route is there when a request comes for it
    assert serving == dict.fromkeys(serving, module)


@pytest.mark.parametrize("path", ["/", "/openapi.json", "/nowhere/else"])
def test_a_path_no_module_serves_is_looked_for_in_all_of_them(path: str) -> None:
    # Given a path outside every resource
    # When the HTTP function picks its module
    # Then there is none (the function includes them all, and Powertools answers as ever)
    assert module_serving(path) is None
