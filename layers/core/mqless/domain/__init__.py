"""The broker's rules: queues, topics, push consumers and access. No boto3, no wire formats."""
