"""The I/O layer: sockets, tasks and clocks around the sans-I/O call core.

``server``     ``callbridge serve``: the HTTP/WebSocket front door (routes, operators, signals)
``bridge``     one live call: drives a :class:`~engine.core.session.CallSession` from two sockets
``ai_client``  opening the AI leg (timeouts, retries with backoff, fallback)
``echo``       the embedded echo AI provider (the AI Provider protocol) at ``/ws/v1/echo``
``routing``    the ``/ws-adapter/...`` path: parse and check it before the upgrade
``callsim``    ``callbridge call``: a simulated phone call speaking a platform's spec
``wav``        WAV files and test signals for ``callsim`` and tests
``logs``, ``metrics``  JSON log lines and Prometheus metrics
"""
