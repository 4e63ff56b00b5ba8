"""asv benchmarks of wsprox (see asv_bench/README.md)."""
