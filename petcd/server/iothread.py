"""The raft driver's storage thread lives in ``petcd.iothread`` (the clock hands it out)."""

from petcd.iothread import IoThread

__all__ = ["IoThread"]
