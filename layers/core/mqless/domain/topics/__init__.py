"""Topics: publish once, deliver to durable subscriptions; patterns and filter policies."""
