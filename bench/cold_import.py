"""How long each function takes to start cold, beside what any Python Lambda behind API
Gateway loads (boto3, Powertools' resolver, pydantic).

Two figures per function, each the median of fresh interpreters:
- `import`: importing the handler module (issue 18's target: at most 1.2x the bare import);
- `first request`: that import plus the function's first event (a sample from events/),
  so that work moved from import time to the first call shows up here and is not hidden.
  The bare first request is a one-route resolver reading one DynamoDB item.

A third reference, `floor`, is the bare handler plus what any traced, validating handler
loads before its first request is done: Powertools' Logger and Tracer (patching botocore,
as template.yaml's active tracing has it) and one pydantic model. `import pydantic` alone
loads none of pydantic's model machinery; the first model class does (about a third of
the bare import), and every function validates its settings with one.

Each interpreter runs with the environment Lambda gives a function (LAMBDA_TASK_ROOT,
AWS_LAMBDA_FUNCTION_NAME, a sampled trace id, its variables from template.yaml), so that
what switches itself on in Lambda (the X-Ray tracer, its patching) is on here too. AWS is
moto in this process, served on loopback (`AWS_ENDPOINT_URL`): the functions make real
botocore clients and HTTP requests, and nothing leaves the machine. Each function's line
also says how many AWS requests its first event made (the median count moto answered).

Python's cyclic garbage collector runs while modules load: ~15 ms of the bare import and
~20-40 ms of a function's (each full collection scans every object made so far). The
functions pause it while their handler module imports and then freeze what the import made
(`mqless.start_up`, on where Lambda's runtime runs them: the environment here sets
AWS_LAMBDA_RUNTIME_API as Lambda does), so their imports run no collection; the bare and
floor handlers collect as any handler does. Where the first full collection falls moves with
what is imported: a handler that imports less may see it fall in its first request instead,
so its import figure drops by more than it saved. Read the two figures together.

The machine is shared, so each round runs the bare import and every function once in
turn (load drifts alike for all), and each figure is given as CPU time (user + sys of the
interpreter, what load inflates least) and wall time; the ratios divide medians of the
same rounds. Writes bench/results/cold_import.json.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(_ROOT / "layers" / "core"), str(_ROOT / "cli")]
import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402
from moto_stack import ROOT  # noqa: E402 - moto's AWS variables, set at import

from mqless_cli.cfn import load_template, provision  # noqa: E402

RUNS = int(os.environ.get("BENCH_IMPORT_RUNS", "15"))
TARGET = 1.2

# function -> (logical id in template.yaml, its first event)
FUNCTIONS = {
    "authorizer": ("AuthorizerFunction", "authorizer_http_request.json"),
    "dispatch": ("DispatchFunction", "dispatch_queue_insert.json"),
    "http_api": ("HttpApiFunction", "messages_send.json"),
    "sweeper": ("SweeperFunction", "sweeper_schedule.json"),
    "ws": ("WebSocketFunction", "ws_connect_json.json"),
}

BARE_IMPORT = (
    "import boto3, pydantic\nfrom aws_lambda_powertools.event_handler import APIGatewayHttpResolver"
)
BARE_REQUEST = """
app = APIGatewayHttpResolver()
@app.get("/queues/<name>")
def read(name: str) -> dict:
    item = boto3.client("dynamodb").get_item(
        TableName=os.environ["DESTINATIONS_TABLE"], Key={"pk": {"S": name}, "sk": {"S": name}}
    )
    return {"found": "Item" in item}
app.resolve({"version": "2.0", "routeKey": "GET /queues/{name}", "rawPath": "/queues/orders",
    "requestContext": {"http": {"method": "GET", "path": "/queues/orders"}, "stage": "$default"},
    "headers": {}, "isBase64Encoded": False}, context)
"""
FLOOR_IMPORT = f"""{BARE_IMPORT}
from aws_lambda_powertools import Logger, Tracer
logger = Logger(service="floor")
tracer = Tracer(service="floor", patch_modules=("botocore",))
class Settings(pydantic.BaseModel):
    destinations_table: str
"""
FLOOR_REQUEST = BARE_REQUEST.replace(
    "app.resolve(", "Settings(destinations_table=os.environ['DESTINATIONS_TABLE'])\napp.resolve("
)
HANDLER_IMPORT = "import app"
HANDLER_REQUEST = "app.lambda_handler(event, context)"

CHILD = """
import json, os, sys, time
class Context:
    function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:" + function_name
    memory_limit_in_mb = 512
    aws_request_id = "00000000-0000-0000-0000-000000000001"
    log_group_name = "/aws/lambda/" + function_name
    log_stream_name = "cold"
    def get_remaining_time_in_millis(self):
        return 30_000
context = Context()
event = json.loads(sys.stdin.read() or "null")
cpu, wall = time.process_time(), time.perf_counter()
{imports}
imported = time.process_time() - cpu, time.perf_counter() - wall
{request}
served = time.process_time() - cpu, time.perf_counter() - wall
print(json.dumps({{"import": imported, "request": served}}))
"""


def _lambda_env(function: str, variables: dict[str, str], endpoint: str) -> dict[str, str]:
    task_root = ROOT / "functions" / function
    return {
        **variables,
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": f"{ROOT / 'layers' / 'core'}:{task_root}",
        "LAMBDA_TASK_ROOT": str(task_root),
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11",
        "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001",  # what mqless.start_up runs on
        "AWS_LAMBDA_FUNCTION_NAME": f"mqless-{function}",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_ENDPOINT_URL": endpoint,
        "_X_AMZN_TRACE_ID": f"Root=1-00000000-{'0' * 24};Parent={'0' * 16};Sampled=1",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }


def _run(imports: str, request: str, env: dict[str, str], event: str) -> dict[str, list[float]]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD.format(imports=imports, request=request)],
        env=env,
        input=event,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    result: dict[str, list[float]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


class _MotoOnLoopback(BaseHTTPRequestHandler):
    """Hands each request to moto's botocore stubber, as a client in this process would."""

    lock = threading.Lock()
    requests = 0  # answered so far (each run's own: the difference before and after it)
    scope = re.compile(r"Credential=[^/]+/[^/]+/([^/]+)/([^/]+)/")

    def do_POST(self) -> None:
        from botocore.awsrequest import AWSPreparedRequest
        from moto.core.models import botocore_stubber

        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        region, service = self.scope.search(self.headers["authorization"]).groups()  # type: ignore[union-attr]
        request = AWSPreparedRequest(
            method=self.command,
            url=f"https://{service}.{region}.amazonaws.com{self.path}",
            headers=dict(self.headers.items()),
            body=body,
            stream_output=False,
        )
        with self.lock:
            status, headers, answer = botocore_stubber.process_request(request)  # type: ignore[misc]
            _MotoOnLoopback.requests += 1
        payload = answer.encode() if isinstance(answer, str) else answer
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() not in ("content-length", "server", "date"):
                self.send_header(name, str(value))
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_PUT = do_DELETE = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _median(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def _measure(endpoint: str, stack: Any) -> dict[str, Any]:
    def env(function: str) -> dict[str, str]:
        return _lambda_env(function, stack.environment(FUNCTIONS[function][0]), endpoint)

    def event(name: str) -> str:
        return (ROOT / "events" / name).read_text()

    # the queue the sample send goes to (the other samples need nothing)
    _run(HANDLER_IMPORT, HANDLER_REQUEST, env("http_api"), event("queue_put.json"))
    names = ["bare", "floor", *sorted(FUNCTIONS)]
    samples: dict[str, dict[str, list[list[float]]]] = {
        name: {"import": [], "request": []} for name in names
    }
    aws_requests: dict[str, list[int]] = {name: [] for name in names}
    for _ in range(RUNS):
        for name in names:
            before = _MotoOnLoopback.requests
            if name == "bare":
                run = _run(BARE_IMPORT, BARE_REQUEST, env("http_api"), "null")
            elif name == "floor":
                run = _run(FLOOR_IMPORT, FLOOR_REQUEST, env("http_api"), "null")
            else:
                run = _run(HANDLER_IMPORT, HANDLER_REQUEST, env(name), event(FUNCTIONS[name][1]))
            for phase in ("import", "request"):
                samples[name][phase].append(run[phase])
            aws_requests[name].append(_MotoOnLoopback.requests - before)
    medians = {
        name: {
            f"{phase}_{clock}_ms": round(_median([s[i] for s in samples[name][phase]]), 1)
            for phase in ("import", "request")
            for i, clock in enumerate(("cpu", "wall"))
        }
        for name in names
    }
    bare = medians["bare"]
    rows = [
        {
            "function": name,
            "first_request_aws_requests": round(statistics.median(aws_requests[name])),
            **medians[name],
            **{
                f"{key.removesuffix('_ms')}_times_bare": round(value / bare[key], 2)
                for key, value in medians[name].items()
            },
        }
        for name in names[1:]
    ]
    return {"runs": RUNS, "target_times_bare": TARGET, "bare": bare, "functions": rows}


def main() -> None:
    with mock_aws():
        stack = provision(
            load_template(ROOT / "template.yaml"),
            dynamodb=boto3.client("dynamodb"),
            kms=boto3.client("kms"),
        )
        server = ThreadingHTTPServer(("127.0.0.1", 0), _MotoOnLoopback)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            result = _measure(f"http://127.0.0.1:{server.server_address[1]}", stack)
        finally:
            server.shutdown()
    out = ROOT / "bench" / "results" / "cold_import.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    _print(result)


def _print(result: dict[str, Any]) -> None:
    bare = result["bare"]
    print(
        f"cold start, median of {result['runs']} fresh interpreters (Lambda's environment),"
        f" CPU ms (wall ms); target: import <= {TARGET}x bare"
    )
    print(
        f"  {'bare':<12} import {bare['import_cpu_ms']:>6} ({bare['import_wall_ms']:>6})"
        f"   + first request {bare['request_cpu_ms']:>6} ({bare['request_wall_ms']:>6})"
    )
    for row in result["functions"]:
        mark = "" if row["import_cpu_times_bare"] <= TARGET else "  (over target)"
        print(
            f"  {row['function']:<12} import {row['import_cpu_ms']:>6} ({row['import_wall_ms']:>6})"
            f" {row['import_cpu_times_bare']:>5}x ({row['import_wall_times_bare']:>5}x)"
            f"   + first request {row['request_cpu_ms']:>6} ({row['request_wall_ms']:>6})"
            f" {row['request_cpu_times_bare']:>5}x,"
            f" AWS requests: {row['first_request_aws_requests']}{mark}"
        )


if __name__ == "__main__":
    main()
