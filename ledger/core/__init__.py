"""The pure core: canonical JSON, envelopes and signatures, the event catalogue and code lists, identifiers,
the rules and the access policy, Merkle maths, signed notes and tiles. Nothing here does I/O or imports
anything of ours above it."""
