"""GoodPoint unsupervised training (paper §4–5), installed as ``goodpoint_training``."""
