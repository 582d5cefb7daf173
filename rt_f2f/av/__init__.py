"""Audio/video timing: the A/V scheduler, the A/V clock, time stretch and the live face-to-face driver.

The rule of this package: synchronous cores without I/O, async drivers around them. A core decides (where speech
goes on the output clock, how fast it plays, which camera slot a frame takes, how far the camera clock drifts)
from the inputs and the current time it is handed; it opens nothing, starts no thread, sleeps on nothing and reads
no clock of its own, so tests drive it in virtual time. A driver owns the clock, the worker thread and the queues
and only moves items between a core and the outside.

Cores: ``scheduler.AVScheduler``, ``clock`` (drift estimate, camera clock -> audio clock), ``timestretch`` (WSOLA).
Drivers: ``scheduler.RealtimeScheduler`` (paces a core on an injectable clock) and ``facetoface`` (``FrameSink``:
scheduled items -> audio at once, frames re-mouthed in order on one worker thread; ``LiveFaceToFace``: the two
together; ``FaceToFace``: a file through them).

Kept import-light: import the module you need.
"""
