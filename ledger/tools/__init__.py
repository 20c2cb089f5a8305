"""Operator tools: initialising and administering a ledger home, the simulator, the GIAS import."""
