"""WebSocket API entry point: $connect, $default and $disconnect all land here."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from mqless.observability import logger
from mqless.websocket import handle_event


@logger.inject_lambda_context
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return handle_event(event)
