"""In Lambda a function's start-up objects are made without the garbage collector and then
frozen out of its sight; anywhere else (tests, `mqless dev`) CPython's default stays."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mqless.start_up import start_up_frozen
from mqless_cli.cfn import Stack, load_template

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = sorted(p.name for p in (ROOT / "functions").iterdir() if (p / "app.py").exists())

# A new execution environment: the interpreter imports the handler module, as Lambda's
# runtime does, and reports the collector's state after it.
_IMPORT_HANDLER = """
import gc, json
import app
print(json.dumps({"enabled": gc.isenabled(), "frozen": gc.get_freeze_count()}))
"""


def _after_cold_import(function: str, *, runtime_api: str | None) -> dict[str, int]:
    """The collector's state once `function`'s handler module is imported in a new interpreter
    (with Lambda's `AWS_LAMBDA_RUNTIME_API` set to `runtime_api`, or unset)."""
    paths = [ROOT / "layers" / "core", ROOT / "functions" / function]
    return _in_new_interpreter(_IMPORT_HANDLER, paths, runtime_api=runtime_api)


def _in_new_interpreter(
    script: str,
    paths: list[Path],
    *,
    runtime_api: str | None,
    variables: dict[str, str] | None = None,
) -> dict[str, int]:
    """What `script` prints last (JSON), run by a new interpreter with `paths` as its
    PYTHONPATH, Lambda's `AWS_LAMBDA_RUNTIME_API` set to `runtime_api` (or unset), and
    `variables` added to the environment."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("AWS_LAMBDA_RUNTIME_API", "PYTHONPATH")
    }
    env.update(variables or {})
    env["PYTHONPATH"] = os.pathsep.join(str(path) for path in paths)
    if runtime_api is not None:
        env["AWS_LAMBDA_RUNTIME_API"] = runtime_api
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    result: dict[str, int] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("function", FUNCTIONS)
def test_in_lambda_a_function_s_start_up_is_frozen_and_the_collector_runs_after(
    function: str,
) -> None:
    """Given Lambda's runtime (it sets AWS_LAMBDA_RUNTIME_API)
    When a new execution environment imports the function's handler module
    Then what the import made is in the permanent generation, out of every collection's walk,
    and the collector is on again for what requests make
    """
    after = _after_cold_import(function, runtime_api="127.0.0.1:9001")

    assert after["enabled"]
    assert after["frozen"] > 50_000  # the modules, botocore's models, pydantic's validators


def test_outside_lambda_importing_a_function_freezes_nothing() -> None:
    """Given no Lambda runtime (tests, `mqless dev`, a script)
    When the handler module is imported in a new interpreter
    Then CPython's default stays: nothing frozen, the collector on
    """
    after = _after_cold_import("http_api", runtime_api=None)

    assert after == {"enabled": True, "frozen": 0}


def test_a_handler_import_that_fails_in_lambda_leaves_the_collector_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Given Lambda's runtime and a handler module whose import raises
    When the runtime has the error to report
    Then the collector is on again (the process goes on making objects)
    """
    monkeypatch.setenv("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001")
    assert gc.isenabled()

    with pytest.raises(ImportError), start_up_frozen():
        raise ImportError("No module named 'missing'")

    assert gc.isenabled()


# A new execution environment past its import: what its first request builds once per process
# (a service through `mqless.wiring`, the routes module serving the HTTP path).
_BUILD_ONCE = """
import gc, json
from mqless import wiring
from mqless.transports.http import api
frozen = gc.get_freeze_count()
wiring.clock()
after_service = gc.get_freeze_count()
api.include_routes("queues")
after_routes = gc.get_freeze_count()
print(json.dumps({"enabled": gc.isenabled(), "service": after_service - frozen,
                  "routes": after_routes - after_service}))
"""


def _first_builds(*, runtime_api: str | None) -> dict[str, int]:
    return _in_new_interpreter(_BUILD_ONCE, [ROOT / "layers" / "core"], runtime_api=runtime_api)


def test_in_lambda_what_a_first_request_builds_once_is_frozen_too() -> None:
    """Given Lambda's runtime and a function past its import
    When its first request builds a process-wide service and imports a routes module
    Then each is made with the collector paused and frozen after (the clients' models and
    the modules live as long as the process), and the collector is on again
    """
    after = _first_builds(runtime_api="127.0.0.1:9001")

    assert after["enabled"]
    assert after["service"] > 0
    assert after["routes"] > 1_000  # the routes module, its models and its routes


def test_outside_lambda_what_a_first_request_builds_is_not_frozen() -> None:
    """Given no Lambda runtime (tests, `mqless dev`)
    When a process-wide service is built and a routes module imported
    Then nothing is frozen and the collector stays on
    """
    after = _first_builds(runtime_api=None)

    assert after == {"enabled": True, "service": 0, "routes": 0}


# What pydantic did about plugins once a handler module was imported and its settings read
# (models built and validated with), as a first request does.
_PLUGINS_AFTER_SETTINGS = """
import json
import app
from mqless import wiring
from pydantic.plugin import _loader
print(json.dumps({"validated": wiring.settings().auth_required,
                  "scanned": _loader._plugins is not None}))
"""


@pytest.mark.parametrize("function", FUNCTIONS)
def test_a_function_s_cold_start_does_not_scan_the_installed_packages_for_pydantic_plugins(
    function: str,
) -> None:
    """Given a function's environment as template.yaml deploys it (Globals merged)
    When a new execution environment imports its handler module and reads its settings
    (pydantic models, built and validated with)
    Then pydantic looked for no plugin: none is installed, and its look reads the metadata
    of every installed distribution (a cold start's CPU, for nothing)
    """
    stack = Stack(load_template(ROOT / "template.yaml"))
    logical_id = next(
        name
        for name, properties in stack.functions().items()
        if properties.get("CodeUri") == f"functions/{function}/"
    )
    variables = {k: v for k, v in stack.environment(logical_id).items() if isinstance(v, str)}
    paths = [ROOT / "layers" / "core", ROOT / "functions" / function]

    after = _in_new_interpreter(
        _PLUGINS_AFTER_SETTINGS, paths, runtime_api="127.0.0.1:9001", variables=variables
    )

    assert after == {"validated": True, "scanned": False}
