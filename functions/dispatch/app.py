"""Stream trigger: topic fan-out to durable and live subscribers; queue push consumers fed."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from mqless.observability import instrumented
from mqless.transports.dispatch import handle_batch


@instrumented()
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return handle_batch(event, context)
