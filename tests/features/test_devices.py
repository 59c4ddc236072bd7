"""Process settings for the DataLoader workers that decode and embed."""

import json
import platform
import resource
import subprocess
import sys

import pytest
import torch
from torch.utils.data import DataLoader, Dataset
from vidprobe.features.clips import worker_init

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc settings are glibc's")


class FaultCount(Dataset):
    """Each item: page faults per round of what an embedding worker does every batch (a fresh input tensor
    through a patch convolution), counted after a first round."""

    def __len__(self):
        return 2

    def __getitem__(self, i):
        weight = torch.randn(64, 3, 2, 16, 16)

        def one_round():
            x = torch.rand(8, 3, 8, 64, 64).clone()
            torch.nn.functional.conv3d(x, weight, stride=(2, 16, 16))

        one_round()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(10):
            one_round()
        return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10


def faults_in_workers(init) -> float:
    loader = DataLoader(FaultCount(), batch_size=None, num_workers=2, worker_init_fn=init)
    return max(loader)


def threads_only(_: int) -> None:
    torch.set_num_threads(1)


def fault_counts() -> dict:
    return {"default": faults_in_workers(threads_only), "ours": faults_in_workers(worker_init)}


@glibc
def test_workers_reuse_freed_memory_instead_of_faulting_in_fresh_pages():
    """Counted under a fresh parent, as `vidprobe embed` starts: a parent's malloc state (thresholds glibc raised
    as it freed large blocks, a heap full of freed pages) passes to its forked workers."""
    out = subprocess.run([sys.executable, __file__], capture_output=True, text=True, check=True).stdout
    counts = json.loads(out.strip().splitlines()[-1])
    default, ours = counts["default"], counts["ours"]
    assert default > 50, f"the allocation pattern no longer faults by default ({default}): the test proves nothing"
    assert ours < default / 10, (ours, default)


if __name__ == "__main__":
    print(json.dumps(fault_counts()))
