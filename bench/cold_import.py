"""How long each function's module takes to import cold, beside the bare import of what any
Python Lambda behind API Gateway loads (boto3, Powertools' resolver, pydantic).

Issue 18's target: a handler's import at most 1.2x the bare one. Each figure is the median
of fresh interpreters (the import timed inside the process, so interpreter start-up is not
in it), run with the environment Lambda gives a function (AWS_LAMBDA_FUNCTION_NAME set), so
that what switches itself on in Lambda (the X-Ray tracer) is imported as it would be there.
Writes bench/results/cold_import.json.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = int(os.environ.get("BENCH_IMPORT_RUNS", "7"))
TARGET = 1.2

BARE = (
    "import boto3, pydantic\nfrom aws_lambda_powertools.event_handler import APIGatewayHttpResolver"
)
TIMED = """
import time
began = time.perf_counter()
{body}
print(time.perf_counter() - began)
"""


def _lambda_env(function: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": f"{ROOT / 'layers' / 'core'}:{ROOT / 'functions' / function}",
        "AWS_LAMBDA_FUNCTION_NAME": f"mqless-{function}",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "_X_AMZN_TRACE_ID": f"Root=1-00000000-{'0' * 24};Parent={'0' * 16};Sampled=1",
        "POWERTOOLS_SERVICE_NAME": "mqless",
    }


def _median_import_seconds(body: str, function: str) -> float:
    samples = []
    for _ in range(RUNS):
        done = subprocess.run(
            [sys.executable, "-c", TIMED.format(body=body)],
            env=_lambda_env(function),
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        samples.append(float(done.stdout.strip().splitlines()[-1]))
    return statistics.median(samples)


def main() -> None:
    functions = sorted(p.name for p in (ROOT / "functions").iterdir() if (p / "app.py").exists())
    bare = _median_import_seconds(BARE, functions[0])
    rows = []
    for function in functions:
        seconds = _median_import_seconds("import app", function)
        rows.append(
            {
                "function": function,
                "import_ms": round(seconds * 1000, 1),
                "times_bare": round(seconds / bare, 2),
            }
        )
    result = {
        "runs": RUNS,
        "bare_ms": round(bare * 1000, 1),
        "target_times_bare": TARGET,
        "functions": rows,
    }
    out = ROOT / "bench" / "results" / "cold_import.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(
        f"cold import, median of {RUNS} fresh interpreters (Lambda's environment),"
        f" target <= {TARGET}x bare"
    )
    print(f"  bare (boto3 + Powertools resolver + pydantic): {result['bare_ms']} ms")
    for row in rows:
        mark = "" if row["times_bare"] <= TARGET else "  (over target)"
        print(f"  {row['function']:<12} {row['import_ms']:>7} ms  {row['times_bare']:>5}x{mark}")


if __name__ == "__main__":
    main()
