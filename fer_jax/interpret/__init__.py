"""Interpretation tools: Grad-CAM heatmaps (``gradcam``), action-unit analysis and figures."""
