"""Access: who a caller is (authentication), what they may do, their keys and quotas."""
