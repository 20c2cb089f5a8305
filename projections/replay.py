"""The views' fact tables rebuilt from the log itself, in memory: what ``report verify`` checks a published report
against (api/web/site.py), independent of the live views' tables."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from ledger.core.times import timestamp
from ledger.storage.store import Store

from .facts import Moment, in_force
from .runner import VIEWS, Projector


class ReplayedFacts:
    """The views' fact tables rebuilt from the log itself up to ledger sequence ``last_sequence`` (a checkpoint's), in an
    in-memory database: every stored event of the tree (decrypted, as the projections read it) mapped by the views' own
    row functions, corrections applied in log order. Answers ``facts`` as ``projections.runner.Reader`` does."""

    def __init__(self, store: Store, last_sequence: int, batch_size: int = 2000):
        self.db = sqlite3.connect(":memory:", check_same_thread=False)
        for view in VIEWS:
            for table in view.tables:
                for statement in table.ddl():
                    self.db.execute(statement)
        projector = Projector(store, batch_size=batch_size, ready=True)
        position = 0
        while position < last_sequence:
            batch = projector.read_log(position)  # the projections' own read and decryption of the log
            if not batch.rows:
                break
            events = [ev for ev in batch.events if ev.seq <= last_sequence]
            for view in VIEWS:
                if view.maintain is not None:
                    continue  # the read model: the replay folds its facts (projections.context)
                for ev in events:
                    for table, values in view.rows(ev):
                        self.db.execute(table.insert_sql(), table.row(ev, values))
                    if ev.record.corrects:
                        for table in view.fact_tables:
                            self.db.execute(
                                f"UPDATE {table.name} SET superseded_at = ? WHERE event_id = ? AND superseded_at IS NULL",
                                (timestamp(ev.record.received_at), ev.record.corrects),
                            )
            position = int(batch.rows[-1][0])

    def facts(
        self,
        table: str,
        moment: Moment,
        columns: str = "*",
        where: str = "",
        params: Sequence[Any] = (),
        order: str = "seq",
        effective_cut: bool = True,
    ) -> list[tuple[Any, ...]]:
        sql, args = in_force(table, moment, where, params, columns, effective_cut)
        return list(self.db.execute(f"{sql} ORDER BY {order}", args))
