#!/usr/bin/env python3
"""Render nginx.conf's ${NAME} placeholders from the environment, as the nginx image's envsubst does.

Usage: scripts/render_nginx.py OUTPUT   (values from the environment; defaults below)
Stdlib only, so it runs without the project's virtualenv.
"""

import getpass
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "nginx.conf"
PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")


def default_values(env) -> dict:
    """The values used when the environment does not set a placeholder: a loopback deployment from this checkout."""
    instance = Path(env.get("INSTANCE_DIR") or ROOT / "instance")
    run_dir = env.get("RUN_DIR") or str(ROOT / ".run" / "nginx")
    return {
        "LISTEN": "127.0.0.1:8080",
        "APP_UPSTREAM": "127.0.0.1:8000",
        "IMAGE_DIR": str(instance / "images"),
        "STATIC_DIR": str(ROOT / "webapp" / "static"),
        "RUN_DIR": run_dir,
        "LOG_DIR": run_dir,
        # Workers of a root-started nginx need to read IMAGE_DIR; Debian's nginx user is www-data.
        "NGINX_USER": "www-data" if os.geteuid() == 0 else getpass.getuser(),
        "NGINX_WORKERS": "auto",
    }


def render(template: str, values: dict) -> str:
    """`template` with every ${NAME} replaced; KeyError names a placeholder without a value."""
    missing = sorted({name for name in PLACEHOLDER.findall(template) if name not in values})
    if missing:
        raise KeyError(f"no value for {', '.join(missing)}")
    return PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), template)


def render_file(output, env=None) -> dict:
    """Write the rendered nginx.conf to `output`, create its run and log folders; return the values used."""
    env = os.environ if env is None else env
    values = default_values(env)
    values.update({name: env[name] for name in values if env.get(name)})
    text = render(TEMPLATE.read_text(), values)
    for folder in (values["RUN_DIR"], values["LOG_DIR"]):
        Path(folder).mkdir(parents=True, exist_ok=True)
    Path(output).write_text(text)
    return values


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    for name, value in render_file(sys.argv[1]).items():
        print(f"{name}={value}", file=sys.stderr)
