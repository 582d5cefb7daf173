"""Sample rates more than one part of rt-f2f must agree on.

``ENGINE_RATE`` is the one home of the speech engine's input rate: the VAD, Whisper, the ASR policy, the camera's
inputs, the call server's and event mode's resamplers all import it, so changing it cannot leave one part behind.
Rates a model fixes for itself stay beside that model: Wav2Lip's mel front end (``lipsync.mel.SAMPLE_RATE``) and
the voice profile's WORLD analysis (``voice.profile.ANALYSIS_RATE``, whose envelope grid is sized for it) are 16 kHz
because those models were built so, not because the engine is.
"""

ENGINE_RATE = 16000  # what the speech engine takes in: webrtcvad frames, Whisper, speaker embeddings
