//! Kernel benchmarks (filled in by the bench work).
