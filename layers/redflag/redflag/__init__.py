"""Red Flag: tell a product team when a user is struggling, while it still matters.

Pure domain (importable without boto3): ``events`` (what the API accepts), ``rules``,
``timers`` (the timer state machine), ``alerts`` (what a red flag says).
Services wiring domain to ports: ``ingest`` (HTTP event -> timer), ``alerting`` (timer -> alert),
``sweeping`` (due timer -> flagged). AWS access lives only in ``redflag.adapters``.
"""
