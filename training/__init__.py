"""GoodPoint unsupervised training (paper §4–5), installed as ``goodpoint_training``.

* :mod:`.trainer` — the loop (AdamW, lr schedule, bf16 autocast, DDP) and :class:`Trainer`;
* :mod:`.targets`, :mod:`.losses` — targets without labels (§4.1) and the losses (eq. 1);
* :mod:`.data`, :mod:`.homography`, :mod:`.noise`, :mod:`.bag_frames`, :mod:`.guard` —
  photo / rosbag2 frames, homographic pairs, photometric noise, evaluation-image guard;
* :mod:`.validation`, :mod:`.release` — the validation split, θ_keypoint sweep and export;
* :mod:`.config`, :mod:`.flags`, :mod:`.checkpoint`, :mod:`.benchmark` — settings, the
  command line, checkpoints and the throughput benchmark.

May import :mod:`goodpoint_ros.core`, :mod:`goodpoint_ros.evaluation.metrics` and torch
(``flags`` imports torch lazily: ``goodpoint --help`` reads its options). Never
:mod:`goodpoint_ros.cli` (the CLI sits above the trainer) or rclpy.
"""
