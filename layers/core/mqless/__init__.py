"""mqless: broker semantics (queues, acks, redelivery, dead letters, FIFO) over DynamoDB."""

__version__ = "0.1.0"
