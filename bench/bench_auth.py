"""`make bench`, third table: what authenticating a caller costs, measured under moto.

The authorizer function is called with real HTTP API authorizer events: an API key, and
a JWT (signed here, keys from an OIDC issuer served on this machine) whose principal
belongs to two groups. It counts the DynamoDB requests each answer makes and times it.
API Gateway caches an answer per token for the template's 300 s, so a client that keeps
calling pays for one authorization per 5 minutes, not one per request.
"""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402
from moto import mock_aws  # noqa: E402
from moto_stack import provisioned  # sets moto's AWS variables first

from mqless.assembly import build_access_control  # noqa: E402
from mqless.domain.access.authentication import (  # noqa: E402
    Authenticator,
    IssuerKeys,
    JwtSettings,
    JwtVerifier,
)
from mqless.domain.access.principals import Principal, parse_grants  # noqa: E402
from mqless.domain.access.users import EVERYTHING  # noqa: E402
from mqless.domain.clock import SystemClock  # noqa: E402
from mqless.transports.authorizer import authorize  # noqa: E402
from mqless_cli.billing import Meter, observing_moto  # noqa: E402

N = int(os.environ.get("BENCH_AUTHORIZATIONS", "200"))
AUDIENCE = "mqless-app"  # JWTs are refused unless an audience is configured and matches
CACHE_SECONDS = 300
# Lambda arm64: $0.20 per million requests + $0.0000133334 per GB-s; 20 ms at 512 MB assumed
LAMBDA_PER_MILLION = 0.20 + 0.0000133334 * 0.5 * 0.020 * 1_000_000
DYNAMODB_PER_MILLION_READS = 0.125


def _issuer() -> tuple[str, Any, ThreadingHTTPServer]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    holder: dict[str, str] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

        def do_GET(self) -> None:
            url = holder["url"]
            body = (
                {"issuer": url, "jwks_uri": f"{url}/jwks"}
                if self.path.endswith("openid-configuration")
                else {"keys": [{**public, "kid": "k1", "alg": "RS256", "use": "sig"}]}
            )
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder["url"] = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return holder["url"], key, server


def _event(token: str) -> dict[str, Any]:
    return {
        "version": "2.0",
        "type": "REQUEST",
        "routeArn": "arn:aws:execute-api:us-east-1:123456789012:api/$default/POST/queues/x",
        "identitySource": [f"Bearer {token}"],
        "headers": {"authorization": f"Bearer {token}"},
        "requestContext": {"http": {"sourceIp": "127.0.0.1"}},
    }


def main() -> int:
    url, key, server = _issuer()
    with mock_aws():
        dynamodb, _, settings = provisioned()
        table = settings.destinations_table
        access = build_access_control(dynamodb, table, SystemClock())
        root = Principal(id="root", grants=EVERYTHING)
        grants = parse_grants([{"pattern": "orders.>", "actions": ["send", "receive"]}])
        for name in ("billing", "jwt:alice", "group:ops", "group:eu"):
            access.put_principal(root, name, grants)
        api_key = access.issue_key(root, "billing").token
        verifier = JwtVerifier(JwtSettings(issuer=url, audience=AUDIENCE), IssuerKeys(url))
        authenticator = Authenticator(access, verifier)
        claims = {"iss": url, "aud": AUDIENCE, "sub": "alice", "exp": int(time.time()) + 3600}
        token = jwt.encode(
            {**claims, "cognito:groups": ["ops", "eu"]}, key, "RS256", headers={"kid": "k1"}
        )
        authorize(_event(token), authenticator)  # warm: discovery and JWKS, once an hour

        print(f"mqless bench: authorizer, {N} authorizations each, moto in-process\n")
        header = f"{'credential':<16} {'DynamoDB req':>12} {'RRU':>6} {'ms each':>8} {'$ / M':>6}"
        print(header)
        print("-" * len(header))
        for name, credential in (("API key", api_key), ("JWT, 2 groups", token)):
            meter = Meter()
            with observing_moto(meter):
                start = time.perf_counter()
                for _ in range(N):
                    answer = authorize(_event(credential), authenticator)
                    assert answer["isAuthorized"], answer
                seconds = time.perf_counter() - start
            usage = meter.usage()
            requests = usage.count("dynamodb") / N
            read_units = usage.total_read_units() / N  # billed by item size (the meter)
            dollars = LAMBDA_PER_MILLION + read_units * DYNAMODB_PER_MILLION_READS
            print(
                f"{name:<16} {requests:>12.2f} {read_units:>6.2f} "
                f"{seconds / N * 1000:>8.2f} {dollars:>6.2f}"
            )
    server.shutdown()
    print(
        f"\nAPI Gateway caches each answer for {CACHE_SECONDS} s per token: a client sending "
        f"10 requests/s pays one authorization per {10 * CACHE_SECONDS:,} requests, "
        f"${LAMBDA_PER_MILLION + 2 * DYNAMODB_PER_MILLION_READS:.2f} per million authorizations "
        "beside $1.00 per million HTTP API requests."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
