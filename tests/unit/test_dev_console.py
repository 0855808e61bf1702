"""What `mqless dev` prints of the functions' output."""

from __future__ import annotations

import io
import json

from mqless_cli.local.console import Console


def test_log_records_are_condensed_and_metrics_documents_left_out() -> None:
    """Given the functions print a JSON log record, an EMF metrics document and a plain line
    When `mqless dev`'s console shows them
    Then the record is one line of level, message and its fields, the plain line is kept, and the
    metrics document is left out
    """
    out = io.StringIO()
    console = Console(out)
    console.function_output(json.dumps({"level": "INFO", "message": "queue created", "queue": "q"}))
    console.function_output(json.dumps({"_aws": {"CloudWatchMetrics": []}, "Sent": [1.0]}))
    console.function_output("plain text")

    assert out.getvalue().splitlines() == [
        "         INFO    queue created queue=q",
        "         plain text",
    ]


def test_verbose_prints_everything_whole() -> None:
    """Given a verbose console
    When a function prints an EMF metrics document
    Then it is printed whole
    """
    out = io.StringIO()
    console = Console(out, verbose=True)
    document = json.dumps({"_aws": {"CloudWatchMetrics": []}, "Sent": [1.0]})
    console.function_output(document)

    assert out.getvalue().splitlines() == [document]


def test_audit_events_say_who_did_what_where() -> None:
    """Given a function prints an audit record of a queue purge
    When the console shows it
    Then the line gives the action, destination and principal
    """
    out = io.StringIO()
    record = {
        "level": "INFO",
        "message": "audit",
        "audit": {"action": "queue.purge", "destination": "orders", "principal": "anonymous"},
    }
    Console(out).function_output(json.dumps(record))

    assert out.getvalue().strip() == (
        "INFO    audit action=queue.purge destination=orders principal=anonymous"
    )


def test_an_audit_event_about_a_principal_names_it_beside_who_acted() -> None:
    # Given the audit record of mqless dev making its dev principal at start
    out = io.StringIO()
    record = {
        "level": "INFO",
        "message": "audit",
        "audit": {"action": "principal.create", "principal": "bootstrap", "subject": "dev"},
    }
    # When the console shows it
    Console(out).function_output(json.dumps(record))
    # Then the line says who acted and which principal was made
    assert out.getvalue().strip() == (
        "INFO    audit action=principal.create principal=bootstrap subject=dev"
    )
