"""Synthetic images with known truth (phantoms) for the demo, tests and benchmarks."""
