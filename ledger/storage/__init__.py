"""Storage adapters: the aggregate (``aggregate``), the ledger's own tables (``schema``), the SQL dialect helpers
(``sql``), the recorders (``recorders``), per-pupil keys (``keys``) and the encrypting mapper (``cipher``), and the
``eventsourcing`` Application they make up (``application``). ``ledger.storage.store.Store`` is the facade over them."""
