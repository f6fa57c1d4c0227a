"""Minimal Django settings to run the NEMO MQTT plugin 2.x bridge standalone
(`python -m NEMO_mqtt_bridge.postgres_mqtt_bridge`) for the peer benchmark.

Used by run.sh (DJANGO_SETTINGS_MODULE=settings, PYTHONPATH=this directory).
The database comes from the environment variable NEMO_PLUGIN2_DATABASE_URL,
`postgres[ql]://user[:password]@host[:port]/dbname[?libpq_option=value...]`;
query parameters become DATABASES OPTIONS (the bridge also passes them to its
own psycopg2 LISTEN connection).

No NEMO: the plugin's AppConfig.ready() tolerates its absence (the signal and
customization imports fail softly and are only logged). Never run `migrate`
with this module: the tables come from the plugin's DDL.
"""

import os
from urllib.parse import parse_qsl, unquote, urlsplit

_url = os.environ.get("NEMO_PLUGIN2_DATABASE_URL", "")
if not _url:
    raise RuntimeError("NEMO_PLUGIN2_DATABASE_URL is not set (run through run.sh)")
_u = urlsplit(_url)
if _u.scheme not in ("postgres", "postgresql"):
    raise RuntimeError("NEMO_PLUGIN2_DATABASE_URL must be a postgres:// URL")

SECRET_KEY = "nemo-mqtt-peer-bench-not-secret"
DEBUG = False  # DEBUG=True would keep every SQL query in memory (skews RSS)
ALLOWED_HOSTS = []
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "NEMO_mqtt_bridge",
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(_u.path.lstrip("/")) or "postgres",
        "USER": unquote(_u.username or "") or "postgres",
        "PASSWORD": unquote(_u.password or ""),
        "HOST": _u.hostname or "localhost",
        "PORT": str(_u.port or 5432),
        "OPTIONS": dict(parse_qsl(_u.query)),
    }
}

# Per-process cache (the plugin caches the active configuration there); the
# bridge always reads its configuration with force_refresh=True anyway.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Belt and braces with the environment variables run.sh sets: never let
# AppConfig.ready() spawn a detached bridge/supervisor or an in-process bridge,
# and never start the embedded (mqttools) broker.
NEMO_MQTT_BRIDGE_SPAWN_SUBPROCESS = False
NEMO_MQTT_BRIDGE_RUN_IN_DJANGO = False
NEMO_MQTT_BRIDGE_AUTO_START = False

# Everything to stderr. The handler is capped at INFO whatever the level the
# bridge sets on its own logger from nemo_mqtt_mqttconfiguration.log_level:
# at DEBUG the bridge logs the HMAC secret key with every event.
_LEVEL = os.environ.get("NEMO_PLUGIN2_LOG_LEVEL", "INFO").upper()
if _LEVEL not in ("INFO", "WARNING", "ERROR"):
    _LEVEL = "INFO"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
            "level": _LEVEL,
            "formatter": "plain",
        },
    },
    "root": {"handlers": ["stderr"], "level": _LEVEL},
}
