"""The audio path: every frame of every call crosses this package twice.

Which module to use:

* :mod:`~engine.dsp.transcoder` -- ``Transcoder(src, dst)``, one per call and direction: the
  only thing the bridge needs per frame (decode, mix, resample, encode in one kernel call).
* :mod:`~engine.dsp.framer` -- ``Framer``: cut the output to a platform's message-size rules.
* :mod:`~engine.dsp.resample` -- ``Resampler``: streaming int16 rate conversion on its own.
* :mod:`~engine.dsp.opus` -- ``OpusEncoder`` / ``OpusDecoder`` on libopus.
* :mod:`~engine.dsp.formats` -- encoding names and ``AudioFormat``.
* :mod:`~engine.dsp.kernels` -- the numba kernels (call ``kernels.warm_up()`` before serving);
  :mod:`~engine.dsp.reference` their numpy twins; :mod:`~engine.dsp.filters` the filter design;
  :mod:`~engine.dsp.g711` the G.711 tables.
"""
