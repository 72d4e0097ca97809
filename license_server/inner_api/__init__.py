"""The Dify-compatible enterprise inner API (``/inner/api``), a view over licenses and deployments.

See docs/inner-api.md and /work/shared/contracts/dify-inner-api.md. Controllers depend only on the ``InnerApiStore``
protocol (store.py); the vendor server's implementation is ``SqlInnerApiStore``.
"""
