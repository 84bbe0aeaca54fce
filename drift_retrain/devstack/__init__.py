"""The embedded default on one machine: the stack (Prefect server, runner, receiver), the demo and its
seeded data, and a sender that posts events the way Event Grid does."""
