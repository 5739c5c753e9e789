"""Runtime services shared by training, evaluation and retrieval: device and precision, checkpoints (with the
resume restore), memory checks, torchrun process groups, metrics."""
