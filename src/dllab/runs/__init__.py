"""One run of ``dllab-train`` as a library: check, build, fit and test, record.

The command line (:mod:`dllab.train`), the other entry points (``dllab-eval``, ``dllab-data``)
and the launchers (:mod:`dllab.launchers`) import this package; it imports none of them.
"""
