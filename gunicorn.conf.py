"""gunicorn settings for the web process; every value can be overridden on the command line or by the environment."""

import multiprocessing
import os

bind = os.environ.get("BIND", "127.0.0.1:8000")
# A request waits on Redis for about half its time, so a worker more than the cores keeps them busy.
workers = int(os.environ.get("WEB_WORKERS") or multiprocessing.cpu_count() * 2 + 1)
threads = int(os.environ.get("WEB_THREADS") or 1)
worker_class = os.environ.get("WEB_WORKER_CLASS") or ("sync" if threads == 1 else "gthread")
# nginx keeps idle connections to us (gthread honours keep-alive; sync closes after each response).
keepalive = 75
timeout = 30
graceful_timeout = 20
backlog = 2048
# Replace a worker now and then, at different moments, so a slow leak cannot grow without bound.
max_requests = int(os.environ.get("WEB_MAX_REQUESTS") or 0)
max_requests_jitter = max_requests // 10
# nginx writes the access log; set ACCESS_LOG=- to have gunicorn log requests too.
accesslog = os.environ.get("ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
wsgi_app = "webapp:create_app()"
# The master builds the app and loads the plans once, then forks: a worker started later (after a
# crash, a timeout kill, max_requests) serves the slot at once, without asking a database that may hang.
preload_app = True


def when_ready(server):
    """Before the first fork: load the plans into the master's app, for every worker to inherit."""
    server.app.wsgi().extensions["plans"].preload()
