"""The API as ``bench_api_scale.py`` serves it: uvicorn with N worker processes.

``create`` is an app factory so uvicorn can start the workers itself
(``workers`` needs an import string): its supervisor binds the port once and every
worker accepts on that one socket, as ``uvicorn --workers`` would in production.
Each worker builds its own services from the ``THREATBAY_*`` environment.

    .venv/bin/python benches/bench_api_app.py PORT [WORKERS]
"""

from __future__ import annotations

import sys

import uvicorn
from fastapi import FastAPI

from api.app import create_app
from core.settings import Settings
from threatbay.bootstrap import build


def create() -> FastAPI:
    return create_app(build(Settings()))


if __name__ == "__main__":
    port = int(sys.argv[1])
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    uvicorn.run("bench_api_app:create", factory=True, host="127.0.0.1", port=port,
                workers=workers, log_level="warning", access_log=False)  # fmt: skip
