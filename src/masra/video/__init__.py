"""Reading video files: frame sampling shared by prior generation and feature extraction."""
