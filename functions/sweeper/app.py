"""Scheduled sweep: send scheduled messages falling due (`mqless.domain.scheduling`), dead-letter
over-limit messages and drop expired ones between receives, then feed push consumers what
became visible without a stream record (ended leases, delays), close connections whose
credential expired or whose API key was revoked, and delete the temporary queues of
connections that ended without `$disconnect`."""

from mqless.start_up import start_up_frozen

with start_up_frozen():  # in Lambda: the collector pauses while the function loads
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from mqless import wiring
    from mqless.observability import instrumented, logger


@instrumented()
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    # first: scheduled messages are due at a given second, the rest only sooner or later
    fired = wiring.scheduler().fire_due(budget_ms=_budget_ms(context) // 2)
    report = wiring.queue_service().sweep(budget_ms=_budget_ms(context))
    fed = wiring.sessions().pump_all(report.listed)  # the queues the sweep listed
    connections = wiring.sessions().sweep_connections()
    logger.info(
        "sweep done",
        extra={
            "report": {k: v for k, v in report.__dict__.items() if k != "listed"},
            "scheduled": fired.__dict__,
            "pushed": fed.pushed,
            "connections": connections.__dict__,
        },
    )
    return {
        "queues": report.queues,
        "dead_lettered": report.dead_lettered,
        "expired": report.expired,
        "errors": fired.errors + report.errors + fed.errors + connections.errors,
        "scheduled_fired": fired.fired,
        "pushed": fed.pushed,
        "connections_closed": connections.closed,
        "temp_queues_deleted": connections.temp_queues,
    }


def _budget_ms(context: LambdaContext) -> int:
    return max(1_000, context.get_remaining_time_in_millis() - 10_000)
