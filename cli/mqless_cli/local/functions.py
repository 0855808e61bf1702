"""Run the template's Lambda functions in this process, the way the Lambda runtime would.

Each function's `CodeUri` folder is imported under a module name of its own (so every
`app.py` can coexist), its `Handler` is called with the event and a context carrying
the function's name, memory and timeout, and every invocation is reported to a listener
(the console) with its duration and outcome.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from mqless_cli.cfn import Json, Stack


class FunctionError(Exception):
    """The function raised: Lambda would report an `Unhandled` error for this invocation."""

    def __init__(self, function: str, error: BaseException) -> None:
        super().__init__(f"{function} failed: {type(error).__name__}: {error}")
        self.function = function
        self.error = error
        self.trace = "".join(traceback.format_exception(error))


@dataclass(frozen=True)
class Invocation:
    """What the console hears about each call."""

    function: str
    request_id: str
    milliseconds: float
    error: FunctionError | None
    summary: str


@dataclass
class LambdaContext:
    """The context object a Python Lambda handler receives."""

    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    aws_request_id: str
    timeout_seconds: float
    log_group_name: str
    log_stream_name: str = "local"
    function_version: str = "$LATEST"
    _deadline: float = 0.0

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    code_dir: Path
    module: str
    handler: str
    timeout: float
    memory: int


Listener = Callable[[Invocation], None]


class FunctionHost:
    """Loads and invokes the stack's functions; thread-safe, one module per function."""

    def __init__(self, stack: Stack, root: Path, listener: Listener | None = None) -> None:
        self._stack = stack
        self._root = root
        self._listener = listener
        self._lock = threading.Lock()
        self._handlers: dict[str, Callable[[Any, Any], Any]] = {}
        self.specs: dict[str, FunctionSpec] = {}
        for logical_id, props in stack.functions().items():
            self.specs[logical_id] = _spec(logical_id, props, root)

    def environment(self) -> dict[str, str]:
        """The union of every function's environment; conflicting values are refused."""
        merged: dict[str, str] = {}
        for logical_id in self.specs:
            for name, value in self._stack.environment(logical_id).items():
                if merged.get(name, value) != value:
                    raise ValueError(
                        f"functions disagree on {name} ({merged[name]!r} vs {value!r}); "
                        "the local runtime shares one process environment"
                    )
                merged[name] = value
        return merged

    def invoke(
        self,
        logical_id: str,
        event: Any,
        *,
        summary: str | Callable[[Any], str] = "",
        request_id: str | None = None,
    ) -> Any:
        """Call the function with `event`; FunctionError if it raised."""
        handler = self._handler(logical_id)
        spec = self.specs[logical_id]
        context = LambdaContext(
            function_name=f"{self._stack.stack_name}-{logical_id}",
            memory_limit_in_mb=spec.memory,
            invoked_function_arn=(
                f"arn:aws:lambda:{self._stack.region}:{self._stack.account_id}:function:"
                f"{self._stack.stack_name}-{logical_id}"
            ),
            aws_request_id=request_id or str(uuid.uuid4()),
            timeout_seconds=spec.timeout,
            log_group_name=f"/aws/lambda/{self._stack.stack_name}-{logical_id}",
        )
        start = time.perf_counter()
        failure: FunctionError | None = None
        result: Any = None
        try:
            result = handler(event, context)
            return result
        except Exception as exc:  # a function's crash is an invocation result
            failure = FunctionError(logical_id, exc)
            raise failure from exc
        finally:
            if self._listener is not None:
                text = summary(result) if callable(summary) else summary
                self._listener(
                    Invocation(
                        function=logical_id,
                        request_id=context.aws_request_id,
                        milliseconds=(time.perf_counter() - start) * 1000,
                        error=failure,
                        summary=text,
                    )
                )

    def function_for_arn(self, value: Json) -> str:
        """The logical id an integration URI or function ARN points at."""
        text = str(self._stack.resolve(value))
        for logical_id in self.specs:
            if f"function:{self._stack.stack_name}-{logical_id}" in text or text == logical_id:
                return logical_id
        raise KeyError(f"no function in the template matches {text!r}")

    def _handler(self, logical_id: str) -> Callable[[Any, Any], Any]:
        with self._lock:
            found = self._handlers.get(logical_id)
            if found is None:
                found = self._load(self.specs[logical_id])
                self._handlers[logical_id] = found
            return found

    def _load(self, spec: FunctionSpec) -> Callable[[Any, Any], Any]:
        path = spec.code_dir / f"{spec.module.replace('.', '/')}.py"
        name = f"mqless_function_{spec.logical_id}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise FileNotFoundError(f"{spec.logical_id}: cannot load {path}")
        module: ModuleType = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        module_spec.loader.exec_module(module)
        handler = getattr(module, spec.handler, None)
        if not callable(handler):
            raise AttributeError(f"{spec.logical_id}: {path} has no {spec.handler}()")
        return handler  # type: ignore[no-any-return]


def _spec(logical_id: str, props: dict[str, Json], root: Path) -> FunctionSpec:
    code_uri = props.get("CodeUri")
    handler = props.get("Handler")
    if not isinstance(code_uri, str) or not isinstance(handler, str) or "." not in handler:
        raise ValueError(f"{logical_id}: needs a local CodeUri and a module.function Handler")
    module, _, function = handler.rpartition(".")
    timeout = props.get("Timeout", 3)
    memory = props.get("MemorySize", 128)
    return FunctionSpec(
        logical_id=logical_id,
        code_dir=(root / code_uri).resolve(),
        module=module,
        handler=function,
        timeout=float(timeout) if isinstance(timeout, (int, float, str)) else 3.0,
        memory=int(memory) if isinstance(memory, (int, float, str)) else 128,
    )
