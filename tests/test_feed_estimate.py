"""The benchmark's verdict on whether the data loader keeps the GPU fed."""
import pytest

from noisemim.benchmark.pipeline import cpus_per_device, feed_estimate


def test_workers_without_a_core_do_not_count():
    fed = feed_estimate(160., num_workers=12, needed=1650., cpus=14)
    assert (fed.usable_workers, fed.supply, fed.input_bound) == (12, 1920.,
                                                                 False)
    assert fed.verdict() == ('fed: 12 workers x 160 = 1920 images/s >= 1650 '
                             'needed')
    starved = feed_estimate(160., num_workers=12, needed=1650., cpus=6)
    assert starved.usable_workers == 5 and starved.input_bound
    assert starved.workers_needed == 11
    assert starved.verdict().startswith('INPUT-BOUND: 5 workers x 160 = 800')
    # num_workers=0: the training process loads the data itself.
    assert feed_estimate(50., 0, 40.).usable_workers == 1


def test_bad_rates_are_named():
    with pytest.raises(ValueError, match='per_worker must be > 0'):
        feed_estimate(0., 4, 10.)
    assert cpus_per_device(10**6) == 1 and cpus_per_device(1) >= 1
