"""Benchmarks: scripts that measure, each run from the repository root as
`python -m benchmarks.NAME` (a package, so they share provenance.py, xla_analysis.py,
op_profile.py and train_setup.py without touching sys.path). Results: RESULTS.md."""
