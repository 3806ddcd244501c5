"""PostgreSQL (or any RDB) storage that outlives restarts, dropped connections and frozen workers.

:class:`ResilientRDBStorage` is Optuna's ``RDBStorage`` with every call retried with backoff
while the database is away, a bound on how long a frozen process's transaction may hold its
locks, a result told too late dropped in one line rather than a crash, and the orphans of lost
replies failed. :func:`hpo.storage._backends.open_storage` opens it with a small bounded
connection pool.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

import optuna
import sqlalchemy.event
import sqlalchemy.exc
from optuna.trial import TrialState

from hpo import record
from hpo.storage._lineage import RetryStale, retry

# Each worker process holds at most POOL_SIZE + MAX_OVERFLOW connections: one for the trial
# loop, one for the heartbeat thread. N processes need 2N connections (plus 2 for a launcher).
POOL_SIZE, MAX_OVERFLOW = 1, 1
CONNECTIONS_PER_PROCESS = POOL_SIZE + MAX_OVERFLOW
# How long a storage call keeps retrying a lost database before giving up, in seconds.
RETRY_FOR_S = float(os.environ.get("HPO_DB_RETRY_S", "600"))
# A transaction left idle this long is ended by PostgreSQL (idle_in_transaction_session_timeout):
# a worker frozen inside a write (SIGSTOP, a swapped-out VM, a network split) holds its trial's
# row lock, which every other worker's stale-trial check waits on; without a bound, forever.
# Optuna's transactions last milliseconds, so only a frozen process ever reaches it.
IDLE_TRANSACTION_S = 10.0

# What a worker says when another worker failed its trial for silence before it could tell
# the result (it was frozen, swapped out or cut off): the result is not stored.
LATE_RESULT_DROPPED = ("a late result was dropped: its trial was declared stale by another "
                       "worker and retried meanwhile")

_log = logging.getLogger("hpo.storage")
T = TypeVar("T")


def _transient(error: BaseException) -> bool:
    """Whether ``error`` means "the database is away for now" rather than a real failure."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError |
                      sqlalchemy.exc.DisconnectionError):
            return True
        if isinstance(seen, sqlalchemy.exc.DBAPIError) and seen.connection_invalidated:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _retrying(name: str, method: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(method)
    def call(self: ResilientRDBStorage, *args: Any, **kwargs: Any) -> T:
        delay, deadline, attempt = 0.5, time.monotonic() + RETRY_FOR_S, 0
        while True:
            try:
                return method(self, *args, **kwargs)
            except optuna.exceptions.UpdateFinishedTrialError:
                settled = (_finished_meanwhile(self, args, kwargs, retried=attempt > 0)
                           if name == "set_trial_state_values" else None)
                if settled is None:
                    raise
                return settled  # type: ignore[return-value]
            except Exception as e:
                if not _transient(e) or time.monotonic() > deadline:
                    raise
                attempt += 1
                _log.warning("storage unreachable (%s); retry %d of %s in %.1f s",
                             type(e).__name__, attempt, name, delay)
                time.sleep(delay)
                delay = min(delay * 2, 15.0)

    return call


def _finished_meanwhile(storage: ResilientRDBStorage, args: tuple[Any, ...],
                       kwargs: dict[str, Any], retried: bool) -> bool | None:
    """What ``set_trial_state_values`` returns for a trial that another write has finished.

    A retried write whose first attempt did commit before its reply was lost: True, done. A
    result (complete or pruned) of a trial that another worker declared stale meanwhile (this
    one was frozen, or slow, between Optuna's check and its write): dropped with one line, and
    False ("not updated", as for a lost claim), since Optuna's tell cannot take this error and
    would stop the worker with an assertion. None for anything else (two workers failing one
    stale trial): the error is raised, for the caller to decide.
    """
    wanted = kwargs.get("state", args[1] if len(args) > 1 else None)
    stored = storage.get_trial(args[0])
    if retried and stored.state == wanted:
        return True
    if wanted in (TrialState.COMPLETE, TrialState.PRUNED) and stored.state == TrialState.FAIL:
        _log.warning("%s (trial %d is FAIL)", LATE_RESULT_DROPPED, stored.number)
        return False
    return None


ORPHAN_REASON = ("orphaned: its creation was stored but the reply was lost with the "
                 "connection, so no worker ever ran it")
# A claimed retry or replicate whose worker died (or lost the reply) before its first heartbeat:
# it has a chain (and checkpoints) behind it, so it is queued again rather than just failed.
CLAIMED_ORPHAN_REASON = ("orphaned: claimed by a worker that never sent a heartbeat (it died "
                         "or lost the reply)")


class ResilientRDBStorage(optuna.storages.RDBStorage):
    """RDBStorage whose every call survives a database restart or a dropped connection.

    Connection errors are retried with exponential backoff (0.5 s doubling to 15 s) for up to
    ``HPO_DB_RETRY_S`` seconds (default 600); pre-ping replaces connections the server closed.
    A finished trial's result is therefore stored once the database is back, never lost.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._heartless_since: dict[int, float] = {}
        self._bound_idle_transactions()

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)
        self._bound_idle_transactions()

    def _bound_idle_transactions(self) -> None:
        """Has the server end this storage's transactions once idle for ``IDLE_TRANSACTION_S``.

        A frozen process finds its connection closed when it runs again: an error its storage
        calls retry like a restart's, so the write is made again or, if its trial was failed
        meanwhile, refused. Set per connection rather than in the URL's ``options``, which
        poolers such as PgBouncer refuse and which a user's own ``options`` would replace.
        """
        if self.engine.dialect.name != "postgresql":
            return
        setting = f"SET idle_in_transaction_session_timeout = {int(IDLE_TRANSACTION_S * 1000)}"

        def bound(dbapi_connection: Any, _record: Any) -> None:
            with dbapi_connection.cursor() as cursor:
                cursor.execute(setting)
            dbapi_connection.commit()

        sqlalchemy.event.listen(self.engine, "connect", bound)
        self.engine.dispose()  # the connections that checked the schema were made without it

    def annotate_finished(self, trial_id: int, key: str, value: Any) -> None:
        """Sets a user attribute of a trial even when it has finished.

        Optuna refuses every write to a finished trial; the one exception hpo makes is the
        reason of a trial that Optuna's heartbeat check failed while its run was silent.
        """
        from optuna.storages._rdb import models

        table = models.TrialUserAttributeModel
        text = json.dumps(value)
        with self.engine.begin() as conn:
            where = (table.trial_id == trial_id) & (table.key == key)
            if conn.execute(sqlalchemy.update(table).where(where)
                            .values(value_json=text)).rowcount == 0:
                conn.execute(sqlalchemy.insert(table).values(trial_id=trial_id, key=key,
                                                             value_json=text))

    def _heartless_running(self, study_id: int) -> list[int]:
        """RUNNING trials of the study that have never recorded a heartbeat."""
        from optuna.storages._rdb import models

        with self.engine.connect() as conn:
            query = sqlalchemy.select(models.TrialModel.trial_id).where(
                models.TrialModel.study_id == study_id,
                models.TrialModel.state == TrialState.RUNNING,
                ~sqlalchemy.exists().where(
                    models.TrialHeartbeatModel.trial_id == models.TrialModel.trial_id),
            )
            return [row[0] for row in conn.execute(query)]

    def fail_orphans(self, study_id: int) -> list[int]:
        """Fails the RUNNING trials that have had no heartbeat for a whole grace period.

        Optuna's stale-trial check skips trials without a heartbeat row, and a worker records
        one as soon as it has created a trial. A trial without one is a trial whose creation
        committed while the reply was lost with the connection (the retried call made another
        trial): no process runs it, and left alone it would stay RUNNING forever and make every
        worker wait for it at the end of the study. Ages are taken from this process's
        monotonic clock, over repeated calls, so other machines' clocks do not matter.

        Returns:
            The ids of the trials failed by this call.
        """
        if self.heartbeat_interval is None:
            return []
        grace = self.grace_period or 2 * self.heartbeat_interval
        now, seen = time.monotonic(), self._heartless_since
        current = set(self._heartless_running(study_id))
        for trial_id in set(seen) - current:
            del seen[trial_id]
        failed = []
        for trial_id in sorted(current):
            if now - seen.setdefault(trial_id, now) < grace:
                continue
            del seen[trial_id]
            trial = self.get_trial(trial_id)
            # A retry or a replicate that a worker popped from the queue and never started:
            # its chain must go on. A plain lost creation never trained: failing it is enough.
            claimed = bool(record.retry_history(trial)) or record.is_replicate(trial)
            reason = CLAIMED_ORPHAN_REASON if claimed else ORPHAN_REASON
            try:
                self.set_trial_user_attr(trial_id, record.STOP_REASON, reason)
                self.set_trial_state_values(trial_id, TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # it was not an orphan after all, or another worker failed it first
            then = "failed it"
            callback = self.get_heartbeat_stale_trial_callback()
            if claimed and isinstance(callback, RetryStale):
                number = retry(self, study_id, self.get_trial(trial_id), callback.liveness)
                then = (f"queued to resume as trial {number}" if number is not None
                        else "not retried: its retries are spent")
                self.annotate_finished(trial_id, record.STOP_REASON, f"{reason}; {then}")
            _log.warning("trial %d %s; %s", trial.number, reason, then)
            failed.append(trial_id)
        return failed


for _name in (
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
    "get_study_id_from_name", "get_study_name_from_id", "get_study_directions",
    "get_study_user_attrs", "get_study_system_attrs", "get_all_studies", "create_new_trial",
    "set_trial_param", "get_trial_id_from_study_id_trial_number", "get_trial_number_from_id",
    "get_trial_param", "set_trial_state_values", "set_trial_intermediate_value",
    "set_trial_user_attr", "set_trial_system_attr", "get_trial", "get_all_trials",
    "get_n_trials", "get_best_trial", "record_heartbeat", "_get_stale_trial_ids",
    # what Optuna's _CachedStorage (the wrapper every Study puts around an RDBStorage) calls:
    "_create_new_trial", "_get_best_trial_id", "_get_trials", "_set_trial_param",
    "_heartless_running", "annotate_finished",
):
    setattr(ResilientRDBStorage, _name, _retrying(_name, getattr(ResilientRDBStorage, _name)))
