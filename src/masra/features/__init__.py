"""Video and query features from files: the CLIP encoder, per-video extraction, batch extraction commands."""
