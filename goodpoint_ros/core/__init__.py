"""The GoodPoint core: what every other layer builds on, with no ROS and no I/O policy.

* :mod:`.config` — the typed settings (paper sections cited), the single source of defaults;
* :mod:`.geometry` — the one pixel convention: warps, in-frame tests, projections;
* :mod:`.model` — the paper's network (§3), torch;
* :mod:`.keypoints` — the shared post-processor (NMS, border, top-k, descriptor sampling);
* :mod:`.matching` — mutual nearest neighbours and geometric verification (OpenCV USAC);
* :mod:`.pipeline` — :class:`FeatureExtractor`, image in → :class:`Features` out;
* :mod:`.weights` — safetensors weights with metadata;
* :mod:`.imageio`, :mod:`.image_msgs`, :mod:`.visualize` — image files, ``sensor_msgs/Image``
  payloads (ROS-free bytes → arrays, shared by the node and bag replay), drawings.

May import: numpy, OpenCV, safetensors, :mod:`goodpoint_ros.backends` (pipeline only);
torch lazily (model). Never ``ros``, ``evaluation``, ``cli`` or ``goodpoint_training``.
"""
