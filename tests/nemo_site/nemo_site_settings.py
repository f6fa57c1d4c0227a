"""Django settings of a real NEMO 8.1.5 site with the MQTT plugin, for the page tests.

The database comes from NEMO_SITE_DATABASE_URL: `sqlite:///abs/path.sqlite3` or
`postgres://user[:password]@host:port/name`. What would start a second bridge is kept off:
this site runs beside nemo-mqtt's bridge, never its own.
"""

import os
from urllib.parse import parse_qsl, unquote, urlsplit

# Plugin 2.x: never spawn a bridge or supervisor from AppConfig.ready(), never run one in
# Django, never start the embedded broker (read from the environment and from settings).
for _name in (
    "NEMO_MQTT_BRIDGE_SPAWN_SUBPROCESS",
    "NEMO_MQTT_BRIDGE_RUN_IN_DJANGO",
    "NEMO_MQTT_BRIDGE_AUTO_START",
):
    os.environ[_name] = "0"
os.environ["NEMO_MQTT_BRIDGE_SPAWN_SKIP"] = "1"
os.environ.pop("NEMO_MQTT_BRIDGE_DEV_PKILL", None)
NEMO_MQTT_BRIDGE_SPAWN_SUBPROCESS = False
NEMO_MQTT_BRIDGE_RUN_IN_DJANGO = False
NEMO_MQTT_BRIDGE_AUTO_START = False

# Plugin 1.x starts its own Redis-to-MQTT bridge in a thread of every Django process (and in
# "AUTO" mode a mosquitto and a Redis on the default ports). Keep that one off.
import NEMO_mqtt_bridge.apps as _plugin_apps  # noqa: E402

if hasattr(_plugin_apps.MqttPluginConfig, "_start_external_mqtt_service"):
    _plugin_apps.MqttPluginConfig._start_external_mqtt_service = lambda self: None

DEBUG = True
SECRET_KEY = "nemo-mqtt test site, not a secret"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
AUTH_USER_MODEL = "NEMO.User"
ROOT_URLCONF = "NEMO.urls"
WSGI_APPLICATION = "NEMO.wsgi.application"
ALLOW_CONDITIONAL_URLS = True
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "landing"
USE_I18N = False
USE_TZ = True
TIME_ZONE = "UTC"
DATETIME_FORMAT = "l, F jS, Y @ g:i A"
DATE_FORMAT = "m/d/Y"
TIME_FORMAT = "g:i A"
DATETIME_INPUT_FORMATS = ["%m/%d/%Y %I:%M %p"]
DATE_INPUT_FORMATS = ["%m/%d/%Y"]
TIME_INPUT_FORMATS = ["%I:%M %p"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.admin",
    "django.contrib.humanize",
    "NEMO_mqtt_bridge",
    "NEMO",
    "rest_framework",
    "django_filters",
    "mptt",
    "auditlog",
    "nemo_site",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "nemo_site.front.FrontProxy",
    "NEMO.middleware.DeviceDetectionMiddleware",
    "NEMO.middleware.RemoteUserAuthenticationMiddleware",
    "NEMO.middleware.ImpersonateMiddleware",
]
# NEMO's usual deployment: the web server in front authenticates and passes the user name.
AUTHENTICATION_BACKENDS = ["NEMO.views.authentication.RemoteUserAuthenticationBackend"]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "NEMO.context_processors.hide_logout_button",
                "NEMO.context_processors.base_context",
                "django.contrib.auth.context_processors.auth",
                "django.template.context_processors.debug",
                "django.template.context_processors.media",
                "django.template.context_processors.static",
                "django.template.context_processors.request",
                "django.template.context_processors.tz",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
REST_FRAMEWORK = {
    "DEFAULT_PERMISSION_CLASSES": ("NEMO.permissions.DjangoModelPermissions",),
}
STATIC_URL = "/static/"
MEDIA_ROOT = os.environ.get("NEMO_SITE_MEDIA", "/tmp/nemo-site-media")
MEDIA_URL = "/media/"
SERVER_EMAIL = "NEMO <nemo@example.org>"
ADMINS = []
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
IDENTITY_SERVICE = {"available": False, "url": "", "domains": []}
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


def _database(url):
    u = urlsplit(url)
    if u.scheme in ("sqlite", "sqlite3"):
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": unquote(u.path)}
    if u.scheme in ("postgres", "postgresql"):
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(u.path.lstrip("/")),
            "USER": unquote(u.username or ""),
            "PASSWORD": unquote(u.password or ""),
            "HOST": u.hostname or "",
            "PORT": str(u.port or ""),
            "OPTIONS": dict(parse_qsl(u.query)),
        }
    raise RuntimeError(f"NEMO_SITE_DATABASE_URL: no sqlite:// or postgres:// URL: {url!r}")


DATABASES = {"default": _database(os.environ["NEMO_SITE_DATABASE_URL"])}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("NEMO_SITE_LOG_LEVEL", "WARNING")},
}
