"""Logger (and later metrics and tracer) shared by every function, configured from the env."""

from aws_lambda_powertools import Logger

logger = Logger(service="mqless")
