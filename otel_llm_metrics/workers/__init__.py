"""One Prometheus endpoint for all the workers of a server.

Each serving process writes a snapshot of its cumulative metrics to a directory of its server
(``snapshot``, ``files``) once a second and at every way out, off the request path. One worker
holds the endpoint (``holder``): at each scrape it merges its own live numbers with the others'
files (``merge``) and renders them for Prometheus, exemplars included (``exposition``).
"""
