"""Reading and writing images and volumes as numpy arrays plus metadata (no torch here)."""
