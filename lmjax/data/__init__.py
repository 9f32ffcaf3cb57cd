"""Data in: the tfds dataset builders and their table, the face-region caches that training
and validation read, negative windows, window sampling, and fixed-shape sharded batches.
"""
