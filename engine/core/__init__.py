"""The per-call core, sans-I/O: legs, control (the protocol's actions), audio, and the session."""
