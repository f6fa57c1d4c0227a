"""Enqueue NEMO tool-usage events for nemo-mqtt from a Django app.

For labs that run NEMO without the nemo-mqtt-bridge plugin: this is the whole
producer side. Each event becomes one JSON item on the Redis list
``nemo_mqtt_events`` (database 1), in exactly the format the plugin writes, so
the nemo-mqtt bridge, the monitor and the displays treat it the same.

Wire it up in an AppConfig.ready()::

    import redis
    from nemo_mqtt_signals import connect_signals
    connect_signals(redis.Redis(host="127.0.0.1", port=6379, db=1))

Run this file directly to print the items it would queue for two sample events
(nemo-mqtt's test suite compares them byte for byte with the plugin's).
"""

import json
import time

QUEUE_KEY = "nemo_mqtt_events"


def queue_item(topic, payload, qos=1, retain=False, timestamp=None):
    """One queue item: the payload is a JSON document *inside* a string."""
    return json.dumps(
        {
            "topic": topic,
            "payload": json.dumps(payload),
            "qos": qos,
            "retain": retain,
            "timestamp": time.time() if timestamp is None else timestamp,
        }
    )


def tool_enabled(tool_id, tool_name, usage_id, user_name, start_time, timestamp=None):
    """A tool was enabled (someone started using it)."""
    payload = {
        "event": "tool_enabled",
        "tool_id": tool_id,
        "tool_name": tool_name,
        "usage_id": usage_id,
        "user_name": user_name,
        "start_time": start_time,
    }
    return queue_item(f"nemo/tools/{tool_id}/enabled", payload, timestamp=timestamp)


def tool_disabled(tool_id, tool_name, usage_id, user_name, end_time, timestamp=None):
    """A tool was disabled (its user stopped)."""
    payload = {
        "event": "tool_disabled",
        "tool_id": tool_id,
        "tool_name": tool_name,
        "usage_id": usage_id,
        "user_name": user_name,
        "end_time": end_time,
    }
    return queue_item(f"nemo/tools/{tool_id}/disabled", payload, timestamp=timestamp)


def connect_signals(redis_client, key=QUEUE_KEY):
    """Queue an item whenever a NEMO UsageEvent starts or ends."""
    from django.db.models.signals import post_save  # imported here: Django only
    from NEMO.models import UsageEvent

    def on_usage_saved(sender, instance, created, **kwargs):
        tool = instance.tool
        user = instance.user.get_full_name()
        if created:
            item = tool_enabled(tool.id, tool.name, instance.id, user, instance.start.isoformat())
        elif instance.end is not None:
            item = tool_disabled(tool.id, tool.name, instance.id, user, instance.end.isoformat())
        else:
            return
        redis_client.lpush(key, item)

    post_save.connect(on_usage_saved, sender=UsageEvent, weak=False,
                      dispatch_uid="nemo_mqtt_usage")


if __name__ == "__main__":
    print(tool_enabled(1, "Zeiss Supra 55 SEM", 3401, "Jane Doe",
                       "2025-10-16T14:02:32.944572+00:00", timestamp=1760623352.944572))
    print(tool_disabled(12, "Oxford ICP Etcher #2", 3403, "Jos\u00e9 \u00c1lvarez",
                        "2025-10-16T14:42:05.540535+00:00", timestamp=1760625725.5405347))
