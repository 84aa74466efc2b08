"""``project/`` is a user's project for the annotate tests: they copy it and run its own tests in a
subprocess. shapekit's suite must not collect it (nor import its modules for doctests)."""

collect_ignore = ["project"]
