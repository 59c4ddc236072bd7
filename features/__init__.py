"""Decoding, frame sampling, backbones and the HDF5 feature store."""
