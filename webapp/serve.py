"""The web process: granian serving the Flask app, built and given its plans once, before its workers fork.

Usage: python -m webapp.serve [--bind ADDRESS] [--pid FILE]; every setting also comes from the environment
(server_options). It replaced gunicorn's sync workers: the same load test served the page at 1.5x their rate
(docs/performance.md, "App server").
"""

import argparse
import multiprocessing
import os
from pathlib import Path

from granian import Granian
from granian.constants import Interfaces
from granian.log import LogLevels


def server_options(environ=os.environ, bind=None, pid_file=None) -> dict:
    """granian's settings from the environment (and the command line's `bind` and `pid_file`)."""
    bind = bind or environ.get("BIND") or "127.0.0.1:8000"
    options = {
        "interface": Interfaces.WSGI,
        "websockets": False,
        # Each worker runs the app in one Python thread (WEB_THREADS) while its Rust side reads and writes the
        # connections: on 2 cores, 3 workers served the most (docs/performance.md).
        "workers": int(environ.get("WEB_WORKERS") or multiprocessing.cpu_count() + 1),
        "blocking_threads": int(environ.get("WEB_THREADS") or 1),
        "backlog": 2048,
        # A worker that dies (a crash, a kill) is replaced at once; it inherits the app and its plans.
        "respawn_failed_workers": True,
        "respawn_interval": 1.0,
        # Replace each worker after this long, at different moments, so a slow leak cannot grow without bound.
        "workers_lifetime": int(environ.get("WEB_WORKER_LIFETIME") or 0) or None,
        "workers_kill_timeout": 20,  # seconds a stopping worker has to finish its requests
        "log_level": LogLevels(environ.get("LOG_LEVEL", "info").lower()),
        # nginx writes the access log; ACCESS_LOG=1 has granian log requests too.
        "log_access": environ.get("ACCESS_LOG", "") not in ("", "0"),
        "pid_file": Path(pid_file) if pid_file else None,
    }
    if bind.startswith("unix:"):
        # The socket's folder decides who may reach it (nginx's user must be able to write to the socket).
        options.update(uds=Path(bind[len("unix:"):]), uds_permissions=0o666)
    else:
        host, _, port = bind.rpartition(":")
        options.update(address=host.strip("[]") or "0.0.0.0", port=int(port))
    return options


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", help="HOST:PORT or unix:PATH (default: $BIND, else 127.0.0.1:8000)")
    parser.add_argument("--pid", help="write the server's pid to this file")
    args = parser.parse_args(argv)

    from webapp import create_app

    app = create_app()
    # The workers are forked from this process (whatever the Python's default), so each starts with the app and
    # its plans: a worker started later (after a crash or a recycle) serves the slot without asking a database.
    multiprocessing.set_start_method("fork", force=True)
    app.extensions["plans"].preload()
    server = Granian("webapp:create_app", **server_options(bind=args.bind, pid_file=args.pid))
    server.on_reload(app.extensions["plans"].preload)  # SIGHUP: the new workers start with the current plans
    server.serve(target_loader=lambda _target: app)


if __name__ == "__main__":
    main()
