"""Stream trigger: topic fan-out to durable and live subscribers; queue push consumers fed."""

from mqless.start_up import start_up_frozen

with start_up_frozen():  # in Lambda: the collector pauses while the function loads
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from mqless.observability import instrumented
    from mqless.transports.dispatch import handle_batch


@instrumented()
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return handle_batch(event, context)
