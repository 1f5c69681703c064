"""Magic-Me's Face VCD as a face detail pass for generated videos.

- :mod:`.track`: a steady face track (smoothed centre and size, gaps filled from neighbouring frames);
- :mod:`.crop`: square crops with context, resized to the working size;
- :mod:`.redenoise`: the partial re-denoise of the whole face video through the host's sampler;
- :mod:`.paste`: pasting back with a feathered mask (pixels outside it untouched);
- :mod:`.preview`: the track drawn on the frames;
- :mod:`.detect`: per-frame boxes from the pack's face stack;
- :mod:`.face_pass`: the pass from frames to frames.
"""
from .errors import FaceDetailError
from .face_pass import FaceDetailResult, SamplingSettings, face_detail_pass
from .track import FaceTrack, build_track

__all__ = ["FaceDetailError", "FaceDetailResult", "FaceTrack", "SamplingSettings", "build_track",
           "face_detail_pass"]
