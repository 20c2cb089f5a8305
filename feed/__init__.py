"""Distributed mode on Kafka (docs/deployment.md): the relay publishes the ledger's accepted events to the change
feed (``feed.relay``); projection workers in a consumer group apply it to the views (``feed.consumer``). The
record format is ``ledger.feed``; every table the two keep is in ``feed.state``."""
