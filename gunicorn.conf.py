"""gunicorn settings for the web process; every value can be overridden on the command line."""

import multiprocessing
import os

bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_WORKERS", multiprocessing.cpu_count() * 2 + 1))
threads = int(os.environ.get("WEB_THREADS", 1))
worker_class = "sync" if threads == 1 else "gthread"
keepalive = 30
timeout = 30
graceful_timeout = 20
accesslog = os.environ.get("ACCESS_LOG", "-")
wsgi_app = "webapp:create_app()"
