"""Connection plumbing the gateway and the receiver share: reconnect backoff (backoff.py), broker
URLs (broker.py), why an MQTT connection failed in one sentence (mqtt.py), and stopping tasks
despite Python 3.11's swallowed cancellations (cancellation.py)."""
