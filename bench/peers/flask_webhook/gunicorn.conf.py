"""gunicorn settings of the Flask peer (bench/peers/flask_webhook/app.py).

Sync workers, as gunicorn's documentation starts from: one request per worker process at a
time, (2 × cores) + 1 workers — the usual advice, since a sync worker waits on PostgreSQL for
part of every request. On the 2-core benchmark machine that is 5 workers; PEER_WORKERS overrides
it. No --preload: every worker imports the app and opens its own connection pool.
"""

import multiprocessing
import os

bind = os.environ.get("PEER_BIND", "127.0.0.1:8000")  # scripts/bench.sh: unix:RUN_DIR/peer-flask.sock
worker_class = "sync"
workers = int(os.environ.get("PEER_WORKERS", multiprocessing.cpu_count() * 2 + 1))
# Requests nginx hands over while every worker is busy wait in the listen backlog (gunicorn's default).
backlog = 2048
timeout = 30
# gunicorn ≥ 25 opens a control socket in $HOME/.gunicorn by default, shared by every gunicorn of
# the user: the peer needs none.
control_socket_disable = True
accesslog = None  # nginx keeps the access log
errorlog = "-"
loglevel = "info"
