"""Training frames from a rosbag2: sampling, near-duplicate removal, errors, and a real run."""
import numpy as np
import pytest

pytest.importorskip("rosbags")

from goodpoint_ros.core.image_msgs import to_uint8  # noqa: E402
from goodpoint_ros.synthetic.sample_bag import SampleBagSpec, write_sample_bag  # noqa: E402
from goodpoint_training.bag_frames import (  # noqa: E402
    is_near_duplicate,
    load_bag_frames,
    thumbnail,
)

TOPIC = "/airsim_node/drone_1/front_center/Scene"


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    return write_sample_bag(tmp_path_factory.mktemp("bag") / "day",
                            SampleBagSpec(frames=12, size=(160, 120), speed=3.0))


def test_every_kth_frame_is_read_as_gray_uint8(bag):
    frames, rep = load_bag_frames(bag, TOPIC, every=3, duplicate_threshold=0.0)
    assert rep.messages == 12 and rep.sampled == 4 and rep.kept == len(frames) == 4
    assert all(f.dtype == np.uint8 and f.shape == (120, 160) for f in frames)
    assert all(f.std() > 5 for f in frames)                     # real rendered texture, not blank


def test_a_hovering_camera_gives_few_frames_a_moving_one_many(bag, tmp_path):
    # speed 0: the generated drone only sways, so its frames are near-duplicates
    still = write_sample_bag(tmp_path / "still", SampleBagSpec(frames=6, size=(160, 120), speed=0.0))
    frames, rep = load_bag_frames(still, TOPIC, every=1)
    assert rep.kept <= 2 and rep.duplicates >= 4 and rep.kept + rep.duplicates == 6
    moving, rep = load_bag_frames(bag, TOPIC, every=1)
    assert rep.kept >= 10 and rep.duplicates <= 2               # a moving camera keeps its views


def test_near_duplicate_ignores_lighting_but_not_content():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 255, (64, 64), dtype=np.uint8)
    darker = (a * 0.5).astype(np.uint8)
    other = rng.integers(0, 255, (64, 64), dtype=np.uint8)
    assert is_near_duplicate(thumbnail(a), thumbnail(darker), 0.15)
    assert not is_near_duplicate(thumbnail(a), thumbnail(other), 0.15)
    mono16 = (a.astype(np.uint16) * 16)                          # a 12-bit camera in mono16
    assert to_uint8(mono16, gray=True).max() >= 250


def test_bad_bag_topic_and_type_are_one_line_errors(bag, tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_bag_frames(tmp_path / "missing.mcap", TOPIC)
    with pytest.raises(ValueError, match="no topic '/nope'.*topics:"):
        load_bag_frames(bag, "/nope")
    with pytest.raises(ValueError, match="not an image"):
        load_bag_frames(bag, "/airsim_node/drone_1/front_center/Scene/camera_info")
    with pytest.raises(ValueError, match=">= 1"):
        load_bag_frames(bag, TOPIC, every=0)


def test_goodpoint_train_on_a_bag(bag, tmp_path, capsys):
    from goodpoint_ros.cli import main
    out = tmp_path / "run"
    rc = main(["train", "--bag", str(bag), "--image-topic", TOPIC, "--bag-every", "2",
               "--out", str(out), "--max-steps", "2", "--crop", "64", "--batch-size", "2",
               "--threads", "1", "--workers", "0", "--no-validation", "--set", "tensorboard=false"])
    assert rc == 0, capsys.readouterr().err
    assert (out / "last.ckpt").is_file()
    assert "bag:" in (out / "config.yaml").read_text()
    rc = main(["train", "--bag", str(bag), "--out", str(tmp_path / "r2"), "--no-validation"])
    assert rc == 2 and "--image-topic" in capsys.readouterr().err
