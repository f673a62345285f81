"""The fleet page's table and indexes (receiver/web/), one migration per backend.

gateway_states: each gateway's newest retained status (`<prefix>/<gateway>/status`, whose last
will says offline): its state, its free fields as JSON (the models per asset among them) and
when the receiver got it. alerts_by_kind lets "which assets are in alarm" read only the raise and
clear alerts instead of every alert; parts_refused lets the gateway_status view count a
gateway's refused parts without reading all its parts (at 2,500 gateways with 200 parts each the
fleet summary took 352 ms without it: bench/bench_fleet_page.py)."""

from __future__ import annotations

from receiver.db.dialect import Migration

NAME = "0005_fleet_gateway_states"

SQLITE = """
CREATE TABLE gateway_states (
    gateway TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    fields_json TEXT NOT NULL,
    received_at REAL NOT NULL
);
CREATE INDEX alerts_by_kind ON alerts (kind, gateway, asset, t);
CREATE INDEX parts_refused ON parts (gateway) WHERE refused = 1
"""

POSTGRES = """
CREATE TABLE gateway_states (
    gateway text PRIMARY KEY,
    state text NOT NULL,
    fields_json text NOT NULL,
    received_at float8 NOT NULL
);
CREATE INDEX alerts_by_kind ON alerts (kind, gateway, asset, t);
CREATE INDEX parts_refused ON parts (gateway) WHERE refused
"""

SQLITE_MIGRATION = Migration(NAME, SQLITE)
POSTGRES_MIGRATION = Migration(NAME, POSTGRES)
