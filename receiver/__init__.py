"""The cloud receiver: ingests what gateways uplink (appliance/uplink/PROTOCOL.md) into SQLite or
PostgreSQL and acknowledges it end to end. Imports appliance.uplink.schema and appliance.records
only; see receiver/README.md."""
