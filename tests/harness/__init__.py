"""Integration-test harness: a throwaway PostgreSQL, the real `payments` binary and nginx
with the project's own config, all on loopback, started and stopped by the tests."""

from .app import App
from .nginx import Nginx
from .postgres import Postgres
from .stack import Stack

__all__ = ["App", "Nginx", "Postgres", "Stack"]
