"""Live-event interpretation: one speaker, many languages, many listeners through an SFU (Janus).

The speaker's media reaches Janus (a browser publishing into a VideoRoom, or ``--input FILE`` played by rt-f2f).
Janus forwards it over plain RTP into one Streaming mountpoint per language; listeners watch a mountpoint, so the
fan-out to listeners is Janus's work, never Python's. One shared source ASR turns the speaker's words into clauses;
one translator worker per target language (a Ray actor) turns clauses into speech, publishes it into the
VideoRoom, and the controller forwards that feed into the language's mountpoint. When a translator is missing or
dead, the controller forwards the original into that mountpoint instead and says so on its data port.

Modules: ``janus_process`` (run Janus in its own config dir), ``janus_client`` (its HTTP API), ``rtc`` (aiortc
publish / watch), ``source_asr`` (the shared ASR and clause fan-out), ``translator`` (a language's worker),
``placement`` (Ray), ``controller`` (the event's state and failover), ``api`` (organiser HTTP API and pages),
``cli`` (``rt-f2f event start``).
"""
