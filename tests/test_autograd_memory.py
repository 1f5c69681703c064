"""The tests' allocation tracker (``autograd_memory.AllocationPeak``), which the memory estimates and their tests
count with: a storage counts from the operation that allocates it until the storage itself is gone."""
import torch

from autograd_memory import AllocationPeak, cpu_allocator_peak

MIB = 2 ** 20


def _floats(mib):
    return mib * MIB // 4


def test_a_storage_stays_counted_while_any_tensor_over_it_lives():
    """A detached tensor shares its storage without holding the tensor it came from (a view holds it as its
    ``_base``): the storage is counted until the last of them is gone."""
    with AllocationPeak() as tracker:
        base = torch.zeros(_floats(4))
        other = base.detach().view(2, -1)
        del base
        assert tracker.live == 4 * MIB
        del other
        assert tracker.live == 0
    assert tracker.peak == 4 * MIB


def test_views_in_place_results_and_set_aliases_of_memory_that_was_there_are_not_new():
    weight = torch.zeros(_floats(8))
    with AllocationPeak() as tracker:
        views = [weight.view(4, -1), weight.view(4, -1).t(), weight[::2], weight.add_(1.0)]
        alias = torch.empty(0)
        alias.set_(weight.untyped_storage(), 0, weight.shape)
        assert tracker.live == 0   # only the empty tensor's zero bytes
        fresh = weight * 2
        assert tracker.live == 8 * MIB and tracker.peak == 8 * MIB
    del views, alias, fresh


def test_a_tensor_pointed_elsewhere_by_set_does_not_keep_its_first_storage_counted():
    with AllocationPeak() as tracker:
        t = torch.zeros(_floats(4))
        t.set_(torch.zeros(_floats(2)).untyped_storage())
        assert tracker.live == 2 * MIB
        for _ in range(20):          # new storages, at whatever addresses the allocator gives
            torch.zeros(_floats(4))
        assert tracker.live == 2 * MIB
    assert tracker.peak == 6 * MIB   # the first storage and the second, before set_ let the first go
    del t


def test_meta_tensors_count_as_a_device_would_allocate_them():
    with AllocationPeak() as tracker:
        a = torch.empty(_floats(16), device="meta")
        b = (a * 2).view(4, -1)
        del a
        assert tracker.live == 16 * MIB
        del b
    assert tracker.peak == 32 * MIB and tracker.live == 0


def test_the_count_is_what_the_cpu_allocator_holds_at_its_peak():
    """A forward and backward with the usual views (each linear layer's transposed weight, a reshape, a
    detached copy) and a gradient kept: the tracker's peak is the CPU allocator's own, byte for byte."""
    torch.manual_seed(0)
    layers = torch.nn.Sequential(torch.nn.Linear(512, 2048), torch.nn.GELU(), torch.nn.Linear(2048, 512))
    layers.requires_grad_(False)[0].weight.requires_grad_(True)
    x = torch.randn(256, 512)

    def step():
        layers[0].weight.grad = None
        h = layers(x).view(256, 8, 64)
        kept = h.detach().reshape(-1)
        h.pow(2).mean().backward()
        return kept

    with AllocationPeak() as tracker:
        step()
    allocator = cpu_allocator_peak(step)
    assert allocator > 4 * MIB
    assert tracker.peak == allocator, (tracker.peak, allocator)
