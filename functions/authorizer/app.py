"""Lambda authorizer of both APIs: HTTP API requests and WebSocket `$connect` land here."""

from mqless.start_up import start_up_frozen

with start_up_frozen():  # in Lambda: the collector pauses while the function loads
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from mqless import wiring
    from mqless.domain.access import authentication  # noqa: F401 - every request authenticates
    from mqless.observability import instrumented
    from mqless.transports.authorizer import authorize


@instrumented(correlation_id_path="requestContext.requestId")
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return authorize(event, wiring.authenticator())
