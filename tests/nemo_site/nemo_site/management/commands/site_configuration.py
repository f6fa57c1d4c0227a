"""Save NEMO's MQTT configuration as the customization page does: through the plugin's
model, so the plugin's own signals run (plugin 2.x: `NOTIFY nemo_mqtt_reload` on commit)."""

import json

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Save the one MQTTConfiguration row (enabled, broker 127.0.0.1:PORT); print id and updated_at."

    def add_arguments(self, parser):
        parser.add_argument("--broker-port", type=int, required=True)
        parser.add_argument("--client-id", default="nemo-site-bridge")
        parser.add_argument("--log-messages", action="store_true")

    def handle(self, *args, **options):
        from NEMO_mqtt_bridge.models import MQTTConfiguration

        config = MQTTConfiguration.objects.order_by("pk").first()
        if config is None:
            config = MQTTConfiguration(name="Default MQTT Configuration")
        config.enabled = True
        config.broker_host = "127.0.0.1"
        config.broker_port = options["broker_port"]
        config.client_id = options["client_id"]
        config.topic_prefix = "nemo/"
        config.qos_level = 1
        config.retain_messages = False
        config.log_messages = options["log_messages"]
        config.save()
        config.refresh_from_db()
        self.stdout.write(
            json.dumps({"id": config.pk, "updated_at": config.updated_at.isoformat()})
        )
