"""The web process: granian serving the Flask app, built and given its plans once, before its workers fork.

Usage: python -m webapp.serve [--bind ADDRESS] [--pid FILE]; every setting also comes from the environment
(server_options). It replaced gunicorn's sync workers: the page served at 1.37x their rate in alternating rounds of
the same load test (docs/performance.md, "Against another version").
"""

import argparse
import ctypes
import multiprocessing
import os
import signal
import socket
import sys
from pathlib import Path

from granian import Granian
from granian.constants import Interfaces
from granian.log import LogLevels

PR_SET_PDEATHSIG = 1  # prctl(2)


def server_options(environ=os.environ, bind=None, pid_file=None) -> dict:
    """granian's settings from the environment (and the command line's `bind` and `pid_file`)."""
    bind = bind or environ.get("BIND") or "127.0.0.1:8000"
    lifetime = int(environ.get("WEB_WORKER_LIFETIME") or 0) or None
    if lifetime is not None and lifetime < 60:
        raise ValueError(f"WEB_WORKER_LIFETIME is {lifetime}: at least 60 seconds (granian's minimum), or unset")
    level = (environ.get("LOG_LEVEL") or "info").lower()
    if level not in LogLevels.__members__:
        raise ValueError(f"LOG_LEVEL is {level!r}: one of {', '.join(LogLevels.__members__)}")
    options = {
        "interface": Interfaces.WSGI,
        "websockets": False,
        # Each worker runs the app in one Python thread (WEB_THREADS) while its Rust side reads and writes the
        # connections: on 2 cores, 2 workers served as many as 3 with a lower p99, 4 fewer (docs/performance.md).
        "workers": int(environ.get("WEB_WORKERS") or multiprocessing.cpu_count()),
        "blocking_threads": int(environ.get("WEB_THREADS") or 1),
        "backlog": 2048,
        # A worker that dies (a crash, a kill) is replaced at once; it inherits the app and its plans.
        "respawn_failed_workers": True,
        "respawn_interval": 1.0,
        # Replace each worker after this long (one by one, a second apart), so a slow leak cannot grow without bound.
        "workers_lifetime": lifetime,
        "workers_kill_timeout": 20,  # seconds a stopping worker has to finish its requests
        "log_level": LogLevels(level),
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
    try:
        options = server_options(bind=args.bind, pid_file=args.pid)
    except ValueError as exc:
        parser.error(str(exc))

    from webapp import create_app

    app = create_app()
    # The workers are forked from this process (whatever the Python's default), so each starts with the app and
    # its plans: a worker started later (after a crash or a recycle) serves the slot without asking a database.
    multiprocessing.set_start_method("fork", force=True)
    app.extensions["plans"].preload()
    if "uds" in options:
        remove_stale_socket(options["uds"])
    server = Granian("webapp:create_app", **options)
    server.on_reload(app.extensions["plans"].preload)  # SIGHUP: the new workers start with the current plans
    master = os.getpid()

    def in_worker(_target):
        exit_with_parent(master)
        return app

    server.serve(target_loader=in_worker)


def remove_stale_socket(path: Path) -> None:
    """Delete the socket file a killed web process left (nobody answers on it); one that answers stays, and
    granian then refuses to start over it ("address in use")."""
    probe = socket.socket(socket.AF_UNIX)
    try:
        probe.connect(str(path))
    except ConnectionRefusedError:
        path.unlink()
    except OSError:  # no such file, or not a socket: granian says what is wrong
        pass
    finally:
        probe.close()


def exit_with_parent(master: int) -> None:
    """Have the kernel stop this worker (SIGTERM) when the master dies, even by SIGKILL: an orphaned worker would
    go on answering on the socket, with settings and plans nobody manages any more."""
    if not sys.platform.startswith("linux"):  # prctl(2) is Linux's; elsewhere the supervisor must stop them
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != master:  # the master died before the line above
        os.kill(os.getpid(), signal.SIGTERM)


if __name__ == "__main__":
    main()
