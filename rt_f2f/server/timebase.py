"""Rates and time bases of media on the WebRTC side of the server."""

from __future__ import annotations

from fractions import Fraction

WEBRTC_RATE = 48000  # Opus in WebRTC always runs at 48 kHz
AUDIO_PTIME = 0.02  # one 20 ms packet per audio frame, as Opus in WebRTC sends
SAMPLES_PER_FRAME = int(WEBRTC_RATE * AUDIO_PTIME)
VIDEO_CLOCK = 90000
VIDEO_TIME_BASE = Fraction(1, VIDEO_CLOCK)
AUDIO_TIME_BASE = Fraction(1, WEBRTC_RATE)
