"""Resources next to the request numbers: process and system, event loop, pools, caches, GPU.

Everything here is an observable instrument or a plain counter read at collection: nothing is
added to the request path.
"""
