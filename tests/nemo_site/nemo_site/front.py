"""What the web server in front of NEMO does in a real deployment: it authenticates the
visitor and hands NEMO the user name in REMOTE_USER. Here every visitor is the site's
administrator (NEMO_SITE_USER, default `admin`), so a headless browser sees the pages an
administrator sees."""

import os


class FrontProxy:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.META["REMOTE_USER"] = os.environ.get("NEMO_SITE_USER", "admin")
        return self.get_response(request)
