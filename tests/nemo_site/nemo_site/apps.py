from django.apps import AppConfig


class NemoSiteConfig(AppConfig):
    name = "nemo_site"
    label = "nemo_site"
    verbose_name = "nemo-mqtt test site"
