"""Evaluation: metric reports in declared HU conventions, and the quality, speed, simulation benchmarks and run comparison."""
