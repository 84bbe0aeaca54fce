"""What runs beside Prefect: the Event Grid webhook receiver and the one-machine runner."""
