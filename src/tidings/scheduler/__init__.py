"""The worker: durable work tables claimed in batches, periodic jobs, graceful shutdown.

Domains plug their work in as :class:`~tidings.scheduler.worker.WorkSource` and
:class:`~tidings.scheduler.domain.PeriodicJob` values wired in ``bootstrap``.
"""
