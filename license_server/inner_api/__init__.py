"""The Dify-compatible enterprise inner API (``/inner/api``), a view over licenses and deployments.

See docs/inner-api.md and /work/shared/contracts/dify-inner-api.md. One service (service.py) holds the rules for the
vendor server and the edge; it reaches each through the protocols of store.py (``InnerApiStore``,
``InnerApiRecords``), which the vendor implements in store.py and the edge in ``edge.inner_store``.
"""
