"""The on-device batch sampler (`gankit.train.Batches`): index, scale to [-1, 1] and flip, a new permutation each
epoch. The training tests compare runs with each other, which stay equal when both share a sampler's bug."""

from __future__ import annotations

import torch

from gankit.train import Batches

N, B = 16, 4
MARK = 200  # the left column of every image: a horizontal flip moves it to the right


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    """Image k is the value k everywhere but its marked left column; its label is k % 5."""
    images = torch.arange(N, dtype=torch.uint8).view(N, 1, 1, 1).expand(N, 3, 4, 4).clone()
    images[:, :, :, 0] = MARK
    return images, torch.arange(N) % 5


def _ids(x: torch.Tensor) -> torch.Tensor:
    """Which image each of a batch is, from an unmarked pixel."""
    return ((x[:, 0, 1, 1] + 1) * 255 / 2).round().long()


def _batches(flip: bool) -> Batches:
    images, labels = _data()
    return Batches(images, labels, B, flip, 0, torch.device("cpu"), torch.contiguous_format)


def test_batches_are_scaled_to_minus_one_one_and_labels_follow_their_images():
    x, y = _batches(False).get(0)
    assert x.dtype == torch.float32 and x.shape == (B, 3, 4, 4)
    torch.testing.assert_close(x[:, :, :, 0], torch.full_like(x[:, :, :, 0], MARK * 2 / 255 - 1))
    assert torch.equal(y, _data()[1][_ids(x)])


def test_each_epoch_is_a_new_permutation_covering_every_image_once():
    batches = _batches(False)
    epochs = []
    for e in range(3):
        ids = torch.cat([_ids(batches.get(e * batches.steps_per_epoch + i)[0]) for i in range(batches.steps_per_epoch)])
        assert sorted(ids.tolist()) == list(range(N))
        epochs.append(ids.tolist())
    assert epochs[0] != list(range(N)) and epochs[0] != epochs[1] != epochs[2]


def test_flip_is_horizontal_about_half_the_time_and_leaves_labels_alone():
    batches, labels = _batches(True), _data()[1]
    marked = MARK * 2 / 255 - 1
    flipped = 0
    for cursor in range(200):
        x, y = batches.get(cursor)
        on_right, on_left = (x[:, 0, 1, 3] - marked).abs() < 1e-4, (x[:, 0, 1, 0] - marked).abs() < 1e-4
        assert torch.all(on_right ^ on_left)  # mirrored left-right, never upside down
        assert torch.equal(y, labels[_ids(x)])
        flipped += int(on_right.sum())
    assert 0.35 < flipped / (200 * B) < 0.65
