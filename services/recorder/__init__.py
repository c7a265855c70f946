"""Recorder: call audio from the bus to stereo files, local or S3, surviving crashes."""
