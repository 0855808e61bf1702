"""One queue push consumer: a WebSocket subscription that a queue's messages are leased to,
how it acknowledges, and how much it may hold (`prefetch`).

Stored by `storage/push_consumers.py`; fed by `feeding.py`; settled by `settling.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from mqless.domain.access.principals import Action, Grant, Principal
from mqless.domain.push.pushes import Connection
from mqless.storage.deliveries import record_prefix

AckMode = Literal["auto", "client", "client-individual"]
ACK_MODES: Final = ("auto", "client", "client-individual")
DEFAULT_PREFETCH: Final = 10
MAX_PREFETCH: Final = 1000
CONSUMER_SECONDS: Final = 3 * 60 * 60  # outlives API Gateway's 2-hour connection limit


def tag(connection_id: str, subscription: str) -> str:
    """`<connection>#<len>:<subscription>`: the length keeps subscription `a`'s items out of
    a prefix query for `a#b`'s."""
    return f"{connection_id}#{len(subscription)}:{subscription}"


def ack_mode(value: str) -> AckMode:
    """A stored ack mode; anything else is `auto`."""
    if value == "client":
        return "client"
    if value == "client-individual":
        return "client-individual"
    return "auto"


@dataclass(frozen=True)
class Consumer:
    queue: str
    connection: Connection
    subscription: str
    ack: AckMode
    prefetch: int
    principal: str
    destination: str  # as the client named it: /queue/NAME, or /topic/PATTERN (durable)
    credential_expires_at: int | None = None
    """When the key or JWT its connection authenticated with expires: no pushes after."""
    epoch: str = ""
    """Drawn on subscribe: the key range of this subscription's delivery records."""
    acked: int = -1
    """`client` mode: everything pushed up to this watermark is settled (-1: nothing)."""
    watermark_read: bool = True
    """False: a copy without `acked` (`from_settle_fields`), -1 standing for not known:
    a cumulative ack learns it from its own write."""
    owed: bool = False
    """`client` mode: a pump left it without credit while messages may have waited: the
    ack that opens its room pumps (and takes the mark off)."""
    owed_below: int = 0
    """`client-individual`: a pump left it without credit while messages may have waited,
    when its records below this seq were live: an ack of theirs at a refill step pumps
    (`credit.py`)."""
    selector: str | None = None
    """A JMS selector (checked on subscribe): only the messages it selects are leased."""

    @property
    def tag(self) -> str:
        return tag(self.connection.id, self.subscription)

    @property
    def records(self) -> str:
        """The sort-key prefix of its delivery records."""
        return record_prefix(self.tag, self.epoch)

    @property
    def acting_as(self) -> Principal:
        """Who the consumer's leases and acks are done as: whoever subscribed, allowed to
        receive from this queue (checked when it subscribed) and nothing else."""
        receive = Grant.model_construct(pattern=self.queue, actions=(Action.RECEIVE,))
        return Principal(id=self.principal, kind="consumer", grants=(receive,))

    def credential_expired(self, now_s: int) -> bool:
        expires_at = self.credential_expires_at
        return expires_at is not None and expires_at <= now_s
