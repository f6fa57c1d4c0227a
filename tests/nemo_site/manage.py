#!/usr/bin/env python
"""NEMO's manage.py for the test site (settings: nemo_site_settings)."""
import os
import sys

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nemo_site_settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
