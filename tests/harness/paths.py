"""Where the project's files are."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"
SQL_DIR = REPO / "sql"
BINARY = Path(os.environ.get("PAYMENTS_BIN", REPO / ".build" / "release" / "payments"))
NGINX = os.environ.get("NGINX_BIN", "/usr/sbin/nginx")
