"""Fixtures of the receiver tests; the helpers they use live in receiver_helpers.py (a module of
its own name: `from conftest import ...` would find whichever conftest pytest imported first)."""

from receiver_helpers import (  # noqa: F401 (fixtures are found by name)
    any_db_url,
    db,
    db_url,
    gateway,
    postgres_server,
    postgres_url,
    start_receiver,
)
