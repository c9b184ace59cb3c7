"""HTTP side: the ASGI middleware, the per-request recorder and the numbers they keep."""
