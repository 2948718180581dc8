"""visionattn: self-attention for vision around one universal mixing operator."""

__version__ = "0.1.0"
