"""Qt views and controls. The only package besides app/ that imports Qt."""
