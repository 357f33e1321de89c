"""The run folder's layout: the name of every file and folder `gankit train` writes into a run, in one place.

    <run>/config.yaml            the run's full config (resume reads it)
    <run>/metrics.jsonl          one JSON line per logged step, epoch and evaluation
    <run>/samples/epoch_NNNN.png the fixed-noise grid of each epoch
    <run>/samples/epoch_NNNN_batch_BBBB.png  ... and inside it, with log.grids_per_epoch > 1
    <run>/evolution.gif          those grids as an animation
    <run>/plots/*.png            losses, accuracies, FID/KID, the other logged values
    <run>/checkpoints/           last.pt, epoch_NNNN.pt, best.pt
    <run>/generator.safetensors  G's weights and config alone, for sampling
    <run>/tensorboard/           the same metrics and grids as TensorBoard events
"""

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
SAMPLES_DIR = "samples"
GIF_NAME = "evolution.gif"
PLOTS_DIR = "plots"
CHECKPOINTS_DIR = "checkpoints"
GENERATOR_FILE = "generator.safetensors"
TENSORBOARD_DIR = "tensorboard"

#: The least digits of the epoch number in the names of grids and numbered checkpoints (epoch_0001.png).
EPOCH_DIGITS = 4


def epoch_digits(last_epoch: int) -> int:
    """Digits of the epoch numbers in the names of a run's grids and numbered checkpoints: `EPOCH_DIGITS`, or as many as
    its last epoch has (epoch_00001.png ... epoch_12000.png), so that a file listing sorts them in epoch order
    (epoch_10000.png came between epoch_1000.png and epoch_1001.png). Readers take any count."""
    return max(EPOCH_DIGITS, len(str(last_epoch)))


def epoch_file(epoch: int, rest: str, digits: int = EPOCH_DIGITS) -> str:
    """The name of epoch `epoch`'s grid or numbered checkpoint, `rest` after the number: epoch_0012.png with ".png"."""
    return f"epoch_{epoch:0{digits}d}{rest}"


#: What training writes beside config.yaml (the sanity test clears an earlier test's outputs by this list).
RUN_OUTPUTS = (METRICS_FILE, SAMPLES_DIR, GIF_NAME, PLOTS_DIR, CHECKPOINTS_DIR, GENERATOR_FILE, TENSORBOARD_DIR)
