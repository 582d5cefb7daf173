"""Sample rates more than one part of rt-f2f must agree on."""

ENGINE_RATE = 16000  # what the speech engine takes in: webrtcvad frames, Whisper, speaker embeddings
