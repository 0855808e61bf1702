"""The HTTP/JSON transport: API Gateway HTTP API events in, problem bodies out."""
