"""Stream trigger: published topic messages are copied to their durable subscriptions."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from mqless.dispatch import handle_batch
from mqless.observability import logger


@logger.inject_lambda_context
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return handle_batch(event, context)
