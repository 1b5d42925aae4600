"""The contracts every copyserve process loads: the config schema, the error hierarchy and its mapping,
the Prometheus series. They import nothing of ours: ``serve_app`` (the HTTP edge) and ``deployments``
(the Serve deployments and their helpers) both build on them."""
