"""HTTP API entry point: every route of the HTTP API lands here."""

from mqless.start_up import start_up_frozen

with start_up_frozen():  # in Lambda: the collector pauses while the function loads
    from aws_lambda_powertools.logging import correlation_paths
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from mqless.observability import instrumented
    from mqless.transports.http.api import resolve


@instrumented(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return resolve(event, context)
