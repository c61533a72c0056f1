"""Side-by-side benchmarks (DESIGN §7): ``make bench`` runs ``python -m benchmarks.run``.

These are measurements, not tests: nothing here asserts a timing. Each section is a module that
can run on its own (``python -m benchmarks.<section> --help``) and prints one JSON object.
"""
