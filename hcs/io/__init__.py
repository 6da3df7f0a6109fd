"""Readers for instrument exports and the OME-Zarr plate writer/reader."""
