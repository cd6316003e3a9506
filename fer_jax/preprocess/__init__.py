"""Per-clip processing shared by the shard builders and predict: frame sampling, face alignment and
enhancement, landmarks, event simulation and voxel grids."""
