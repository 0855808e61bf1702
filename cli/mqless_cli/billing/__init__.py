"""What the work costs on AWS, billed as AWS bills it: the meter behind `make bench` and
the live bill of `mqless dev`.

- `dynamodb.py`: DynamoDB's billing rules (item sizes, write and read units, indexes,
  transactions, failed conditions, partitions), pure functions with their sources.
- `prices.py`: the list prices, with their sources and date.
- `meter.py`: usage counters every observer reports to, and their price beside SQS's.
- `moto_observer.py`: bills each request moto serves, from its item images.
"""

from mqless_cli.billing.meter import Bill, Meter, Usage, price, sqs_reference
from mqless_cli.billing.moto_observer import observing_moto
from mqless_cli.billing.prices import PRICES, Prices

__all__ = [
    "PRICES",
    "Bill",
    "Meter",
    "Prices",
    "Usage",
    "observing_moto",
    "price",
    "sqs_reference",
]
