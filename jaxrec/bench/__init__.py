"""Benchmarks: `python -m jaxrec.bench NAME`; each compares jaxrec with a named peer in one run
and prints one JSON line with the ratio. One module per benchmark, each with `main(argv)`."""
