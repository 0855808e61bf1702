"""How many queues and durable subscriptions a principal may create unless the template
says otherwise (QueuesPerPrincipal, DurableSubscriptionsPerPrincipal; `quotas` counts them).

Apart from `quotas` so that the settings, which every function reads, name the defaults
without loading the principals' models: the dispatch function's import is ~2 ms CPU
lighter, those models loading with its first batch instead (issue 18; `bench/cold_import.py`).
"""

from __future__ import annotations

from typing import Final

DEFAULT_QUEUES: Final = 100
DEFAULT_SUBSCRIPTIONS: Final = 100
