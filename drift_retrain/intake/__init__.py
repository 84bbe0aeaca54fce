"""The intake: from an Event Grid delivery to a recorded Prefect flow run.

``app`` (the receiver: routes and their answers) → ``auth`` (secret or Entra JWT) → ``delivery``
(content type, handshakes, batch) → ``parsing`` (envelope → DriftSignal) → ``filters`` (subscription
filters, enforced again) → ``handoff`` (one flow run per signal identity) → ``feed`` (best-effort Prefect
events); ``metrics`` counts outcomes, ``subscription`` prints what to create on the Azure side.
"""
