"""The public HTTP caching suite (cache-tests.fyi, http-tests/cache-tests) against our stacks.

Modules, one job each: ``suite`` (the checkout, Node, the suite's own test list, published
results and classification via ``suite_query.mjs``), ``origin`` (the suite's origin server on
loopback, with ``loopback.mjs`` preloaded), ``client`` (the suite's cli.mjs), ``counting`` (one
table row per cache), ``expected`` (the expected-failures list and the gate), ``report``
(classified.json, summary.md), ``runner`` (one run of every profile), ``command`` (the CLI).
docs/conformance.md says how to run it and how the table is counted.
"""
