"""WebSocket API entry point: $connect, $default and $disconnect all land here."""

from mqless.start_up import start_up_frozen

with start_up_frozen():  # in Lambda: the collector pauses while the function loads
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from mqless.observability import instrumented
    from mqless.transports.websocket.handler import handle_event


@instrumented(correlation_id_path="requestContext.connectionId")
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return handle_event(event)
