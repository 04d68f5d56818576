"""Pure NumPy core of Backprop Studio. Never imports Qt."""
