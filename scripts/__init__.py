"""Infrastructure, not measurements: scripts that drive other commands (the remote-GPU
session of benchmarks/). Each runs as a file from the repository root,
`python3 scripts/NAME.py`, and imports only the standard library, so it starts on a bare
machine; the package is here so the tests can import them (`from scripts import ...`)."""
