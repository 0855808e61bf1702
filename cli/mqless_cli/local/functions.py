"""Run the template's Lambda functions in this process, the way the Lambda runtime would.

Each function's `CodeUri` folder is imported under a module name of its own (so every
`app.py` can coexist), its `Handler` is called with the event and a context carrying
the function's name, memory and timeout, and every invocation is reported to a listener
(the console) with its duration and outcome.

Under `--realism` (`LambdaLimits`) the host also behaves as Lambda does at its limits: an
invocation beyond the concurrency cap is throttled without running, one that runs past its
template `Timeout` is cut off (its instance is discarded, as Lambda restarts the runtime), a
caller that waits less (API Gateway's integration limit) gives up first, and each new
instance of a function first waits as long as its handler module took to import (its cold
start). Python cannot stop a thread, so a cut-off invocation runs on unseen, as a timed-out
Lambda's side effects up to the cut may have happened: the broker must be right either way.
"""

from __future__ import annotations

import contextvars
import importlib.util
import random
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
from mqless_cli.local.http_resolver_threads import resolve_on_threads


class FunctionError(Exception):
    """The function raised: Lambda would report an `Unhandled` error for this invocation."""

    def __init__(self, function: str, error: BaseException) -> None:
        super().__init__(f"{function} failed: {type(error).__name__}: {error}")
        self.function = function
        self.error = error
        self.trace = "".join(traceback.format_exception(error))


class FunctionThrottled(FunctionError):
    """Lambda refused the invocation: the concurrency cap was reached (it never ran)."""

    def __init__(self, function: str, limit: int) -> None:
        super().__init__(function, RuntimeError(f"Rate Exceeded. (concurrency limit {limit})"))


class FunctionTimedOut(FunctionError):
    """The function ran past its Timeout; Lambda's error message, as it reports it."""

    def __init__(self, function: str, seconds: float) -> None:
        super().__init__(function, TimeoutError(f"Task timed out after {seconds:.2f} seconds"))


class IntegrationTimedOut(FunctionError):
    """The caller (API Gateway) stopped waiting before the function finished."""

    def __init__(self, function: str, seconds: float) -> None:
        super().__init__(function, TimeoutError(f"no answer within {seconds:g} s"))


@dataclass(frozen=True)
class LambdaLimits:
    """Lambda's limits the host enforces; all off by default (`realism/` sets them)."""

    concurrency: int = 0
    """Invocations running at once across all functions (an account's quota); 0: no cap."""
    timeouts: bool = False
    """Cut an invocation off at its template Timeout."""
    cold_starts: bool = False
    """Each new instance waits as long as its handler module took to import."""
    clock_skew_ms: float = 0
    """Each new instance's clock is off by a random amount up to this, either way."""
    seed: int | None = None


INSTANCE_CLOCK_SKEW_MS: contextvars.ContextVar[float] = contextvars.ContextVar(
    "instance_clock_skew_ms", default=0.0
)
"""How far the clock of the instance running this invocation is off (`realism.skewed_clocks`)."""


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

    def __init__(
        self,
        stack: Stack,
        root: Path,
        listener: Listener | None = None,
        *,
        limits: LambdaLimits | None = None,
    ) -> None:
        self._stack = stack
        self._root = root
        self._listener = listener
        self.limits = limits or LambdaLimits()
        self._lock = threading.Lock()
        self._handlers: dict[str, Callable[[Any, Any], Any]] = {}
        self._import_seconds: dict[str, float] = {}
        self._idle: dict[str, list[float]] = {}  # warm instances of each function: their skew
        self._draw = random.Random(self.limits.seed)
        self._running = 0
        self.instances_started: dict[str, int] = {}
        """New instances of each function started so far (its cold starts)."""
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
        wait_s: float | None = None,
    ) -> Any:
        """Call the function with `event`; FunctionError if it raised, was throttled or timed
        out, IntegrationTimedOut if it had not answered within `wait_s`."""
        handler = self._handler(logical_id)
        spec = self.specs[logical_id]
        cold, skew = self._start_instance(logical_id)
        discard = False
        on_instance = INSTANCE_CLOCK_SKEW_MS.set(skew)
        try:
            if cold and self.limits.cold_starts and self.instances_started[logical_id] > 1:
                # the first instance paid for real: its import was the measure
                time.sleep(self._import_seconds.get(logical_id, 0.0))
            return self._invoke(logical_id, handler, spec, event, summary, request_id, wait_s)
        except (FunctionTimedOut, IntegrationTimedOut):
            discard = True  # still running: this instance is not free again
            raise
        finally:
            INSTANCE_CLOCK_SKEW_MS.reset(on_instance)
            with self._lock:
                self._running -= 1
                if not discard:
                    self._idle.setdefault(logical_id, []).append(skew)

    def _start_instance(self, logical_id: str) -> tuple[bool, float]:
        """Take a warm instance, or start one: whether it is new, and its clock's skew.
        Throttled past the cap."""
        cap = self.limits.concurrency
        with self._lock:
            throttled = bool(cap) and self._running >= cap
            if not throttled:
                self._running += 1
                warm = self._idle.get(logical_id)
                if warm:
                    return False, warm.pop()
                self.instances_started[logical_id] = self.instances_started.get(logical_id, 0) + 1
                most = self.limits.clock_skew_ms
                return True, self._draw.uniform(-most, most) if most else 0.0
        failure = FunctionThrottled(logical_id, cap)
        if self._listener is not None:
            self._listener(Invocation(logical_id, str(uuid.uuid4()), 0.0, failure, "throttled"))
        raise failure

    def _invoke(
        self,
        logical_id: str,
        handler: Callable[[Any, Any], Any],
        spec: FunctionSpec,
        event: Any,
        summary: str | Callable[[Any], str],
        request_id: str | None,
        wait_s: float | None,
    ) -> Any:
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
            result = self._call(logical_id, handler, spec, event, context, wait_s)
            return result
        except FunctionError as exc:
            failure = exc
            raise
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

    def _call(
        self,
        logical_id: str,
        handler: Callable[[Any, Any], Any],
        spec: FunctionSpec,
        event: Any,
        context: LambdaContext,
        wait_s: float | None,
    ) -> Any:
        """Run the handler; past its Timeout (when enforced) or `wait_s`, give up on it."""
        timeout = spec.timeout if self.limits.timeouts else None
        limits = [s for s in (timeout, wait_s) if s is not None]
        if not limits:
            return handler(event, context)
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                outcome["result"] = handler(event, context)
            except Exception as exc:
                outcome["error"] = exc

        runner = threading.Thread(
            target=contextvars.copy_context().run,
            args=(run,),
            name=f"lambda-{logical_id}",
            daemon=True,
        )
        runner.start()
        runner.join(min(limits))
        if runner.is_alive():
            if timeout is not None and (wait_s is None or timeout <= wait_s):
                raise FunctionTimedOut(logical_id, timeout)
            raise IntegrationTimedOut(logical_id, min(limits))
        if "error" in outcome:
            raise outcome["error"]
        return outcome.get("result")

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
        began = time.perf_counter()
        module_spec.loader.exec_module(module)
        self._import_seconds[spec.logical_id] = time.perf_counter() - began
        resolve_on_threads()  # this process runs each handler on a thread per invocation
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
