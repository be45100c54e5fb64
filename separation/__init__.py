"""Source separators (linear-context DNN, conv U-Net) and instrument tagging, on mt3x."""
