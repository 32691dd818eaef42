"""Publishes one valid order.created event to Conveyor, as a producer outside Rust would.

Usage:
    python3 -m venv .venv && .venv/bin/pip install -r requirements.txt
    .venv/bin/python publish_order.py            # AMQP_URL defaults to the local broker
    .venv/bin/python publish_order.py --print    # only print the event, e.g. to pipe into
                                                 # `conveyor schema validate -`

The event follows events-schema/schemas/envelope/v1.json and
events-schema/schemas/order.created/v1.json: a CloudEvents 1.0 envelope in structured JSON
mode, routed on the `conveyor.events` topic exchange by its type.
"""

import json
import os
import secrets
import sys
import time
import uuid
from datetime import datetime, timezone

import pika


def uuid7() -> uuid.UUID:
    """A UUID version 7: 48 bits of Unix milliseconds, then random bits, so ids sort by time."""
    value = (int(time.time() * 1000) << 80) | secrets.randbits(80)
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return uuid.UUID(int=value)


def order_created() -> dict:
    event_id = str(uuid7())
    order_id = str(uuid7())
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": "/services/legacy-shop",
        "type": "order.created",
        "time": datetime.now(timezone.utc).isoformat(),
        "datacontenttype": "application/json",
        "dataschema": "events-schema/order.created/v1",
        "subject": order_id,
        # A new flow: the saga's correlation id is the order id.
        "correlationid": order_id,
        "data": {
            "order_id": order_id,
            "user_id": str(uuid.uuid4()),
            "items": [{"sku": "MUG-BLUE", "quantity": 2, "unit_price_cents": 1250}],
            "total_cents": 2500,
            "currency": "EUR",
        },
    }


def publish(event: dict, amqp_url: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    # Publisher confirms: basic_publish raises unless the broker has stored the event.
    channel.confirm_delivery()
    properties = pika.BasicProperties(
        content_type="application/cloudevents+json",
        delivery_mode=2,  # persistent
        message_id=event["id"],
        type=event["type"],
        app_id="legacy-shop",
        correlation_id=event["correlationid"],
        timestamp=int(time.time()),
    )
    channel.basic_publish(
        exchange="conveyor.events",
        routing_key=event["type"],
        body=json.dumps(event).encode(),
        properties=properties,
        mandatory=True,  # an unroutable event is returned as an error, never dropped
    )
    connection.close()


def main() -> int:
    event = order_created()
    if "--print" in sys.argv:
        print(json.dumps(event))
        return 0
    amqp_url = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
    try:
        publish(event, amqp_url)
    except pika.exceptions.AMQPError as error:
        print(f"error: the broker did not take the event: {error!r}", file=sys.stderr)
        return 1
    print(event["id"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
