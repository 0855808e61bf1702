"""Queues: send, lease, settle, dead letters, FIFO groups, deduplication, receipts."""
