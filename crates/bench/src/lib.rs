//! Benchmarks for Sluice.
