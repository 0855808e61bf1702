"""Push consumers: messages leased to WebSocket subscriptions, and who is consuming."""
