"""The whole-member simulator: real EtcdServers on virtual time over a seeded network
(tests/sim/members.py says how a run goes; `python -m tests.sim --seeds N` runs many)."""
