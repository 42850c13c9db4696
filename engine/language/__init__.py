"""The spec language: load, check and compile the YAML specs that describe each peer.

``loader``     :func:`~engine.language.loader.load_specs`: a spec folder in, a frozen ``SpecSet`` out
``yamlload``   YAML with the line and column of every node, for located errors
``validate``   the JSON Schemas (``schemas/``) every spec must pass first
``protocol``   ``protocol.yaml``: the canonical events, fields and each leg's state table
``vocabulary`` the names a spec may use that the engine implements (actions, guards, variables)
``peer``       compiling a platform or AI spec into a ``CompiledPeer``
``decode``     per frame: recognising a peer's message and extracting its fields
``paths``, ``extract``, ``templates``  the spec's small languages: paths, conditions and
               extraction maps, outgoing message templates
``synth``      a spec read backwards: the messages a peer would send, for tools and tests
``detect``     telling the platform from its first frames (the ``auto`` route)
"""
