"""`mqless dev`: moto, the functions, the gateways, the stream pollers and the schedules.

Authorizers run as API Gateway runs them, and a template whose routes have authorizers gets a
dev token: an API key of principal `dev`, administrator of everything, made in the embedded
AWS at start. `auth=False` (`--no-auth`) runs no authorizer and sets `AUTH_MODE=off`.
"""

from __future__ import annotations

import gc
import logging
import math
import os
import re
import sys
from pathlib import Path
from typing import Any

from mqless_cli.billing import Meter, observing_moto
from mqless_cli.billing.live import LiveBill, record_metrics
from mqless_cli.cfn import Schedule, Stack, StreamSource
from mqless_cli.local.cloud import LocalCloud
from mqless_cli.local.console import Console, FunctionOutput
from mqless_cli.local.full_collections import survivors_frozen
from mqless_cli.local.functions import FunctionHost, Invocation
from mqless_cli.local.http_gateway import LOCAL_BILL_PATH, HttpGateway
from mqless_cli.local.invocations import InvokeApi
from mqless_cli.local.metrics import EmfToCloudWatch
from mqless_cli.local.moto_fixes import REQUEST_LOCK
from mqless_cli.local.realism import (
    Realism,
    RealismReport,
    realistic_aws,
    stream_poller_factory,
)

_EXECUTE_API = re.compile(r"^https://[^/]+\.execute-api\.[^/]+\.amazonaws\.com(\.cn)?")
# a WebSocket API's own URL (wss://<id>.execute-api.<region>.amazonaws.com/<stage>)
_WEBSOCKET_API = re.compile(r"^wss://[^/]+\.execute-api\.[^/]+\.amazonaws\.com(\.cn)?(/[^/]*)?$")
DEV_PRINCIPAL = "dev"


class DevRuntime:
    """The whole stack of one template, started and stopped as a unit."""

    def __init__(
        self,
        template: Path,
        *,
        host: str = "127.0.0.1",
        http_port: int = 8080,
        ws_port: int = 8081,
        schedule_rate: float | None = None,
        verbose: bool = False,
        auth: bool = True,
        streams: bool = True,
        schedules: bool = True,
        console: Console | None = None,
        bill_period: float = 60.0,
        realism: Realism | None = None,
    ) -> None:
        """`streams=False`/`schedules=False` leave stream batches and schedules to the caller
        (`make bench` drives them itself, one batch at a time)."""
        self.template = template
        self.host = host
        self.http_port = http_port
        self.ws_port = ws_port
        self.schedule_rate = schedule_rate
        self.auth = auth
        self.token: str | None = None
        """The dev token, once started (None: no authorizers, or `auth=False`)."""
        self.console = console or Console(verbose=verbose)
        self.run_streams = streams
        self.run_schedules = schedules
        self.meter = Meter()
        """What the stack used, billed as AWS bills it (`mqless_cli.billing`)."""
        self.bill = LiveBill(self.meter, self.console.line, period=bill_period)
        self.functions: FunctionHost | None = None
        self._metering: Any = None
        self.cloud: LocalCloud | None = None
        self.http: HttpGateway | None = None
        self.ws: Any = None
        self._pollers: list[Any] = []
        self._schedules: Any = None
        self.realism = realism or Realism()
        """The AWS behaviours reproduced on purpose (`--realism`; `local/realism/`)."""
        self.faults: RealismReport | None = None
        self._realism: Any = None
        self._collections: Any = None
        self._handing_over = False
        self._handed_over_before: Any = None

    def start(self) -> None:
        self.console.line(f"mqless dev: starting {self.template.name} (moto in-process)")
        self._send_runtime_log_to_console()
        stack, faults = self._provision()
        functions = self._host_functions(stack)
        http, ws_url = self._open_gateways(stack, functions)
        protected = self._configure_functions(stack, functions, http, ws_url)
        self._hand_metrics_over()
        http.start()
        sources = self._start_stream_pollers(stack, functions, faults)
        schedules = self._start_schedules(stack, functions)
        self._print_banner(http.url, functions, sources, schedules, protected=protected)
        self.bill.start()
        # Everything loaded so far (modules, botocore models, moto backends) lives as long as
        # the process: keep it out of the garbage collector's full collections, which would
        # otherwise walk it every time and stall whatever request they fall in.
        gc.collect()
        gc.freeze()
        # and so is, at each full collection, what survived it: stored items live as long
        # (`full_collections.py`: a full collection's pause no longer grows with history)
        self._collections = survivors_frozen()
        self._collections.__enter__()
        REQUEST_LOCK.reset()  # what requests wait for from now on, not provisioning
        self.console.line("mqless dev: ready (Ctrl-C to stop)")

    def _send_runtime_log_to_console(self) -> None:
        """The runtime's own warnings (dropped stream batches, cron not run...) go to the
        console."""
        handler = logging.StreamHandler(FunctionOutput(self.console))
        handler.setFormatter(logging.Formatter("runtime %(levelname)s %(message)s"))
        runtime_log = logging.getLogger("mqless_cli")
        runtime_log.addHandler(handler)
        runtime_log.setLevel(logging.INFO)
        runtime_log.propagate = False

    def _provision(self) -> tuple[Stack, RealismReport]:
        """The template's resources in the embedded AWS, metered, with `--realism` applied;
        the stack and the faults `--realism` injects."""
        self.cloud = LocalCloud.start(self.template)
        self._metering = observing_moto(self.meter)
        self._metering.__enter__()
        self._realism = realistic_aws(self.realism)
        self.faults = faults = self._realism.__enter__()
        return self.cloud.stack, faults

    def _host_functions(self, stack: Stack) -> FunctionHost:
        """The template's functions, their output and metrics routed through the console."""
        # Functions print Powertools JSON logs; route them through the console, and their
        # metrics to the bill and to CloudWatch (as CloudWatch Logs does with EMF on AWS:
        # GET /history reads them back), whether printed or handed over
        # (`_hand_metrics_over`)
        to_cloudwatch = EmfToCloudWatch.in_this_process()

        def metrics(document: dict[str, Any], line: str) -> None:
            record_metrics(self.meter, document, line)
            to_cloudwatch(document)

        self.console.metrics = metrics
        sys.stdout = FunctionOutput(self.console)
        self.functions = FunctionHost(
            stack, self.template.parent, listener=self._invoked, limits=self.realism.lambda_limits
        )
        return self.functions

    def _hand_metrics_over(self) -> None:
        """The core's EMF documents come to the console as they are written, not printed and
        parsed back (the same documents, and lines of the same size, as AWS prints)."""
        # imported once the functions' environment is set: the core's Logger and Tracer
        # read theirs (POWERTOOLS_*) when first imported
        from mqless.observability import hand_emf_over

        self._handed_over_before = hand_emf_over(self.console.metrics_document)
        self._handing_over = True

    def _open_gateways(self, stack: Stack, functions: FunctionHost) -> tuple[HttpGateway, str]:
        """The HTTP gateway (not yet serving) and the WebSocket one if the template has a
        WebSocket API (serving, at the URL returned)."""
        assert self.cloud is not None  # provisioned first
        self.http = http = HttpGateway(
            stack,
            functions,
            host=self.host,
            port=self.http_port,
            run_authorizers=self.auth,
            meter=self.meter,
            bill=self.bill.document,
            integration_timeout_s=self.realism.integration_timeout_s or None,
        )
        ws_url = f"ws://{self.host}:{self.ws_port}"
        if any(True for _ in stack.declared("AWS::ApiGatewayV2::Api")):
            from mqless_cli.local.ws_gateway import WebSocketGateway

            self.ws = WebSocketGateway(
                stack,
                functions,
                host=self.host,
                port=self.ws_port,
                run_authorizers=self.auth,
                meter=self.meter,
                integration_timeout_s=self.realism.websocket_integration_timeout_s or None,
            )
            self.ws.start()
            ws_url = self.ws.url  # the port it got, if asked for any free one (0)
            http.set_connections(self.ws)
            # the functions' @connections calls are answered in-process, not over loopback
            self.cloud.handle("before-send.apigatewaymanagementapi", http.answer_in_process)
        return http, ws_url

    def _configure_functions(
        self, stack: Stack, functions: FunctionHost, http: HttpGateway, ws_url: str
    ) -> bool:
        """The functions' environment, the dev token and `mqless invoke`; whether the
        template's routes are protected by authorizers."""
        http_url = http.url
        for name, value in functions.environment().items():
            # management endpoints of API Gateway become this machine's gateway, and a
            # WebSocket API's URL this machine's WebSocket gateway
            value = _WEBSOCKET_API.sub(ws_url, value)
            os.environ[name] = _EXECUTE_API.sub(http_url, value)
        if not self.auth:
            os.environ["AUTH_MODE"] = "off"  # the functions let everyone in, as `anonymous`
        if self.schedule_rate:
            # a sweep fires scheduled messages due before the next one (and a second more)
            lookahead = max(1, math.ceil(self.schedule_rate)) + 1
            os.environ["SCHEDULE_LOOKAHEAD_SECONDS"] = str(min(lookahead, 600))
        protected = self.auth and _has_authorizers(stack)
        if protected and "DESTINATIONS_TABLE" in os.environ:
            self.token = _dev_token(os.environ["DESTINATIONS_TABLE"])
        if not protected or self.token is not None:
            # `mqless invoke` runs functions here; behind authorizers, for the dev token only
            http.invocations = InvokeApi(
                functions, stack_name=stack.stack_name, token=self.token if protected else None
            )
        return protected

    def _start_stream_pollers(
        self, stack: Stack, functions: FunctionHost, faults: RealismReport
    ) -> list[StreamSource]:
        """A poller per stream event source (none with `streams=False`); the sources."""
        sources = stack.stream_sources() if self.run_streams else []
        for source in sources:
            poller = stream_poller_factory(self.realism, faults)(
                source,
                functions,
                LocalCloud.client("dynamodbstreams"),
                region=stack.region,
                discard_handled=True,  # the pollers are the embedded streams' only readers
            )
            poller.start()
            self._pollers.append(poller)
        return sources

    def _start_schedules(self, stack: Stack, functions: FunctionHost) -> list[Schedule]:
        """The template's schedules, run (none with `schedules=False`); the schedules."""
        schedules = stack.schedules() if self.run_schedules else []
        if schedules:
            from mqless_cli.local.schedules import ScheduleRunner

            self._schedules = ScheduleRunner(
                schedules,
                functions,
                rate_override_seconds=self.schedule_rate,
                region=stack.region,
                account_id=stack.account_id,
            )
            self._schedules.start()
        return schedules

    def _print_banner(
        self,
        http_url: str,
        functions: FunctionHost,
        sources: list[StreamSource],
        schedules: list[Schedule],
        *,
        protected: bool,
    ) -> None:
        """What runs where, and how to authenticate."""
        self.console.line(f"  HTTP API       {http_url}")
        if self.ws is not None:
            self.console.line(f"  WebSocket API  {self.ws.url}")
        self.console.line(f"  functions      {', '.join(sorted(functions.specs))}")
        if sources:
            self.console.line(f"  stream pollers {len(sources)}")
        if schedules:
            rate = f"every {self.schedule_rate:g} s" if self.schedule_rate else "template rate"
            self.console.line(f"  schedules      {len(schedules)} ({rate})")
        if self.realism.active:
            self.console.line(f"  realism        {self.realism.describe()}")
        self._print_auth(protected=protected)
        self.console.line(
            f"  bill           {http_url}{LOCAL_BILL_PATH} (AWS list prices; a line per "
            "active minute here)"
        )

    def _print_auth(self, *, protected: bool) -> None:
        if not self.auth:
            self.console.line("  auth           off (--no-auth)")
        elif self.token is not None:
            self.console.line(f"  dev token      {self.token}")
            self.console.line(
                f"                 export MQLESS_TOKEN={self.token}  "
                "(HTTP: Authorization: Bearer <token>; WebSocket: ?access_token=<token>)"
            )
        elif protected:
            self.console.line("  auth           authorizers on; no dev token for this template")

    def _invoked(self, call: Invocation) -> None:
        self.console.invocation(call)
        if self.functions is not None:
            memory = self.functions.specs[call.function].memory
            self.meter.record_invocation(call.function, memory, call.milliseconds)

    def stop(self) -> None:
        self.bill.stop()
        if self._handing_over:
            from mqless.observability import hand_emf_over

            # printed again, as on AWS (or handed to another runtime of this process)
            hand_emf_over(self._handed_over_before)
            self._handing_over = False
        if self._collections is not None:
            self._collections.__exit__(None, None, None)
            self._collections = None
        if self._schedules is not None:
            self._schedules.stop()
        for poller in self._pollers:
            poller.stop()
        if self.http is not None:
            self.http.stop()
        if self.ws is not None:
            self.ws.stop()
        if self._realism is not None:
            self._realism.__exit__(None, None, None)
            self._realism = None
        if self._metering is not None:
            self._metering.__exit__(None, None, None)
            self._metering = None
        if self.cloud is not None:
            # how long any AWS request had to wait behind another: the local stall figure
            self.console.line(f"mqless dev: {REQUEST_LOCK.stats.summary()}")
            self.cloud.stop()
        sys.stdout = sys.__stdout__


def _has_authorizers(stack: Stack) -> bool:
    """Whether any HTTP or WebSocket route of the template runs an authorizer."""
    if stack.http_authorizers():
        return True
    return any(
        route.authorizer is not None
        for api in stack.websocket_apis()
        for route in api.routes.values()
    )


def _dev_token(destinations_table: str) -> str:
    """A key of principal `dev`, administrator of everything, in the embedded AWS."""
    from mqless.assembly import build_access_control
    from mqless.domain.access.users import bootstrap_admin
    from mqless.domain.clock import SystemClock

    access = build_access_control(LocalCloud.client("dynamodb"), destinations_table, SystemClock())
    return str(bootstrap_admin(access, DEV_PRINCIPAL).token)
