"""Audio/video timing: the A/V scheduler, the A/V clock, time stretch and the live face-to-face driver.

The rule of this package: synchronous cores without I/O, async drivers around them. A core decides (where speech
goes on the output clock, how fast it plays, which output slot a frame takes, how far the camera clock drifts)
from the inputs and the current time it is handed; it opens nothing, starts no thread, sleeps on nothing and reads
no clock of its own, so tests drive it in virtual time (tests/test_scheduler.py). A driver owns the clock, the
worker thread and the queues and only moves items between a core and the outside (tests/test_av_driver.py drives
them with a fake lip-sync session and an injected clock).

Cores (synchronous, no I/O):
  schedule      what the scheduler is configured with, emits (ScheduledAudio/ScheduledVideo) and reports
  scheduler     AVScheduler: speech placed on the output clock (input + D, compressed to stay under D_max)
  clause        ClauseState: one clause's audio as it arrives and is rendered, and its length estimates
  slots         VideoSlots: source frames on the output frame grid, A/V offset measured
  clock         drift estimate; camera clock -> audio clock
  timestretch   pitch-preserving WSOLA time compression
  config        FaceToFaceConfig / FaceToFaceResult and build_scheduler (one direction's settings and outcome)
Drivers (async, own the clock, threads and queues):
  realtime      run_virtual (virtual-time replay) and RealtimeScheduler (a core paced on an injectable clock)
  live          FrameSink (audio at once, frames re-mouthed in order on one worker thread) and LiveFaceToFace
  facetoface    FaceToFace: a recorded file through the speech engine and the live driver

Imports point down that list (``live`` and ``facetoface`` import the cores, never the reverse), and nothing here
imports the server or the camera command. Kept import-light: import the module you need.
"""
