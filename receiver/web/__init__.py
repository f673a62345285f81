"""The fleet page: every gateway at a glance, served by `appliance-receiver run --http`."""
