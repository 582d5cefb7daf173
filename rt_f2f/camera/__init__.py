"""``rt-f2f camera``: the translated, lip-synced speaker as a virtual webcam and a virtual microphone.

Any call app (Zoom, Meet, Teams, Discord, OBS) picks "rt-f2f camera" and "rt-f2f microphone" in its settings. The
speaker's camera and microphone (or a looping recording) go through the same real-time face-to-face core as
``rt-f2f translate --realtime`` and the call server (``rt_f2f.av.live.LiveFaceToFace``): the speech engine, the
A/V scheduler and lip-sync. One pacer then hands audio and frames to the outputs at their playout time on that one
output clock, so the picture and the voice cannot drift apart (audio sent on its own unclocked path is how other
virtual-camera tools end up out of sync).

Modules: ``devices`` (what cameras and microphones exist, the errors about them), ``inputs`` (camera + microphone,
or a looping file), ``video_out`` (pyvirtualcam, Y4M), ``audio_out`` (a sound device, WAV), ``pulse`` (the Linux
virtual microphone: a PulseAudio / PipeWire null sink and a remap source, created and removed here), ``pacer``
(the output clock), ``session`` (the wiring), ``command`` (the CLI).
"""
