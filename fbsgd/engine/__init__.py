"""The compiled engine: configurations (``sweeps.RunConfig``) run in lockstep by numba
kernels (``lockstep``, ``kernel``), cached by content (``sweeps``, ``storage``) under a hash
of the source they ran (``provenance``), on joblib workers (``workers``).  The engine
imports the library and the theory only."""
