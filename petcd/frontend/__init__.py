"""Client front-end processes: the client gRPC API served from several processes (see process.py)."""
