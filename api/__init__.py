"""HTTP API (FastAPI) and the ``pupil-ledger`` command line: thin adapters over ``ledger``."""
