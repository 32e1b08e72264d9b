"""``masra bench``: speed and memory benchmarks that report ratios against a baseline run in the same process."""
