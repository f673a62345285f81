"""Detection: model bundles and runtimes, thresholds, alarms and sensor-health rules."""
