"""Dataset sources, stacking, the spatial-block split and the prepared dataset (SPEC §5)."""
