"""Visual-odometry evaluation: `goodpoint eval vo` (loaders, trajectory metrics, report)."""
