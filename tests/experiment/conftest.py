"""Fixtures of the experiment tests: the session's PostgreSQL server
(:mod:`tests.experiment.postgres_server`), defined here once so that every module shares one."""

from tests.experiment.postgres_server import postgres_server

__all__ = ["postgres_server"]
