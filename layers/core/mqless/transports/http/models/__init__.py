"""HTTP request and response bodies, one module per resource (as `routes/`: `sending` for
a send or publish, shared by queues and topics; `problem` for every error); the OpenAPI
document is generated from these."""
