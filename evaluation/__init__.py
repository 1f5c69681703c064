"""Identity evaluation: how well did an identity come out in a video, and did it keep moving?

Independent of training: the default recogniser is dlib's ResNet (a different architecture and training
set from the ArcFace network the adapter is trained with), so the score is not the quantity training
optimised.  One concept per module:

- ``protocol``: the published scoring protocol (uniform frame sampling, largest face, cosine clipped at
  0, mean over frames with a face) and what the numbers are comparable with.
- ``frames``: IMAGE tensors and arrays to RGB uint8 frames, with the size checks.
- ``detectors``: face detectors (the face stack's SCRFD, dlib HOG/CNN, MTCNN) giving boxes and the five
  ArcFace keypoints.
- ``recognisers``: dlib's ResNet, the face stack's recogniser, any ArcFace-contract ONNX file.
- ``scoring``: per-frame identity similarity of frames against reference photos.
- ``motion``: an optical-flow motion score (an approximation of VBench's dynamic degree).
- ``consistency``: identity consistency over time.
- ``chart``: the per-frame chart (matplotlib).
- ``report``: the report as a dict, JSON and text; atomic file writing.
- ``video_files``: reading videos and photos for the command line.
- ``command``: ``python -m evaluation score ...``.
- ``training_sample``: the score of a training sample, for the trainer's metadata.

dlib, OpenCV, matplotlib, onnxruntime and facenet-pytorch are imported lazily inside functions.
"""
